# Veil build. `make` builds build/veil; `make test` installs missing
# dependencies, builds with ASan+UBSan and runs unit and integration tests.

PKGS    := rdkafka avro-c libhs jansson libcurl yaml-0.1 libcrypto libmicrohttpd
CC      ?= cc
CFLAGS_WARN := -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wformat=2 \
	-Wstrict-prototypes -Wmissing-prototypes -Wvla -fno-common

# The test target defaults to the sanitizer build: make test must be clean
# under ASan+UBSan. `make test SANITIZE=` runs without.
ifneq ($(filter test unit integration,$(MAKECMDGOALS)),)
SANITIZE ?= address,undefined
endif
# Warnings are errors in CI (and whenever WERROR=1).
ifeq ($(CI),true)
WERROR ?= 1
endif

ifneq ($(SANITIZE),)
O       := build/san
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
O       := build
SANFLAGS :=
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  ?= -O2 -g
CFLAGS  += $(CFLAGS_WARN) $(if $(filter 1,$(WERROR)),-Werror) $(SANFLAGS) \
	-Icommon -Ifilters -Iconnectors -MMD -MP $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lpthread -ldl -lm
LDFLAGS += $(SANFLAGS) -rdynamic

LIB_SRC := $(wildcard common/*.c) $(wildcard filters/*.c) \
	$(filter-out connectors/main.c,$(wildcard connectors/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(O)/obj/%.o)
LIB     := $(O)/libveil.a
BIN     := $(O)/veil

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
TEST_SUPPORT_SRC := $(wildcard tests/unit/support_*.c)
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(O)/obj/%.o)

.PHONY: all deps test unit integration demo bench fuzz fuzz-seeds format format-check \
	kafka-up kafka-down clean check-deps
all: $(BIN)

# Keep intermediate objects (test support files) between runs.
.SECONDARY:

# Only the `veil` binary and the library; a sanitized build lives in
# build/san so switching does not force rebuilds.
$(BIN): $(O)/obj/connectors/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
ifneq ($(SANITIZE),)
build/veil: $(BIN)
endif

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(O)/tests/%: tests/unit/%.c $(TEST_SUPPORT_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) \
		$(LIB) $(LDLIBS) $(shell pkg-config --libs criterion)

deps:
	@scripts/deps.sh

# The tests: unit tests (Criterion, one binary per module), then the
# integration tests against `veil broker` and a real single-node Kafka.
test: deps
	$(MAKE) --no-print-directory SANITIZE=$(SANITIZE) unit integration

unit: $(UNIT_BIN) $(BIN)
	@scripts/run-unit.sh $(UNIT_BIN)

integration: $(BIN)
	@VEIL=$(abspath $(BIN)) tests/integration/run.sh

kafka-up:
	@scripts/kafka.sh up
kafka-down:
	@scripts/kafka.sh down

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
fuzz:
	@scripts/fuzz.sh $(FUZZ_SRC:tests/fuzz/%.c=%)

# Rewrites the binary seed corpora (ledger, token, erasure) from bytes the
# code itself produces (tests/fuzz/gen_seeds.c).
fuzz-seeds: $(O)/tests/gen_seeds
	$(O)/tests/gen_seeds
$(O)/tests/gen_seeds: tests/fuzz/gen_seeds.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench: deps
	@scripts/bench.sh

demo: deps all
	@scripts/demo.sh

FORMAT_SRC = $(wildcard common/*.[ch] filters/*.[ch] connectors/*.[ch] \
	tests/unit/*.[ch] tests/fuzz/*.c bench/*.c)
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(O)/obj/connectors/main.d
