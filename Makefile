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

.PHONY: all deps test unit integration demo bench fuzz fuzz-seeds format \
	format-check kafka-up kafka-down clean check-deps bench-e2e install \
	config-reference deploy-check chaos soak
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

# The fault-injecting mock cluster of tests/integration/test_faults.py.
FAULT_BROKER := $(O)/tools/fault_broker
$(FAULT_BROKER): tests/tools/fault_broker.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

integration: $(BIN) $(FAULT_BROKER)
	@VEIL=$(abspath $(BIN)) VEIL_FAULT_BROKER=$(abspath $(FAULT_BROKER)) \
		tests/integration/run.sh

# The crash test (tests/chaos/): two workers, kill -9 at seeded moments,
# the broker stopped and restarted on its data or frozen for a while, an
# independent read_committed verifier. CHAOS_KILLS=3 is CI's short mode
# (one broker restart, one broker freeze); CHAOS_SEED
# reproduces a run. VEIL_KAFKA_PORT/VEIL_STATE are honoured.
chaos: deps $(BIN)
	@VEIL=$(abspath $(BIN)) tests/chaos/run.sh

# 30 minutes at a steady rate; prints the RSS and fd slopes (not in CI).
soak: deps $(BIN)
	@VEIL=$(abspath $(BIN)) CHAOS_SCRIPT=soak tests/chaos/run.sh

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

# Only the worker end to end through the real Kafka (bench/e2e.sh).
bench-e2e: deps
	@scripts/bench.sh e2e

demo: deps all
	@scripts/demo.sh

FORMAT_SRC = $(wildcard common/*.[ch] filters/*.[ch] connectors/*.[ch] \
	tests/unit/*.[ch] tests/fuzz/*.c tests/tools/*.c bench/*.c)
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

# ---- packaging and deployment -------------------------------------------
# `make install PREFIX=/usr DESTDIR=…`: the binary, the man page (generated
# from the binary's own --help), the example config and the systemd unit
# (its ExecStart pointed at the installed binary).
PREFIX         ?= /usr/local
BINDIR         ?= $(PREFIX)/bin
MANDIR         ?= $(PREFIX)/share/man
DOCDIR         ?= $(PREFIX)/share/doc/veil
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system

$(O)/veil.1: $(BIN) deploy/man/gen-man.sh
	deploy/man/gen-man.sh $(BIN) >$@.tmp && mv $@.tmp $@

install: $(BIN) $(O)/veil.1
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/veil
	install -D -m 0644 $(O)/veil.1 $(DESTDIR)$(MANDIR)/man1/veil.1
	install -D -m 0644 config/veil.example.yaml $(DESTDIR)$(DOCDIR)/veil.example.yaml
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's#^ExecStart=/usr/local/bin/veil #ExecStart=$(BINDIR)/veil #' \
		deploy/systemd/veil@.service >$(DESTDIR)$(SYSTEMDUNITDIR)/veil@.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/veil@.service

# docs/config-reference.md is generated from the loader's tables.
config-reference: $(BIN)
	$(BIN) config-reference >docs/config-reference.md

# Validates the deployment files without a container engine or a cluster:
# compose file, Helm chart, Prometheus rules, man page, systemd unit, docs.
deploy-check: $(BIN)
	@VEIL=$(abspath $(BIN)) deploy/check.sh

clean:
	rm -rf build

# Header dependencies (-MMD -MP) of every object, test support file and
# unit test binary: a header change rebuilds what includes it.
-include $(LIB_OBJ:.o=.d) $(O)/obj/connectors/main.d \
	$(TEST_SUPPORT_OBJ:.o=.d) $(UNIT_BIN:=.d)
