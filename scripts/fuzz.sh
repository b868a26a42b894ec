#!/usr/bin/env bash
# fuzz.sh - build each named libFuzzer harness (tests/fuzz/NAME.c) with clang
# against the library sources (never build/libveil.a, which gcc built without
# coverage instrumentation) and run it for FUZZ_SECONDS (default 20) from its
# seed corpus tests/fuzz/corpus_<NAME without fuzz_>. Inputs that once
# crashed a parser live in tests/fuzz/regress_<NAME without fuzz_> and are
# replayed first on every run (libFuzzer runs every file of every corpus
# directory before it mutates), so a regression fails the script.
#
#   scripts/fuzz.sh fuzz_plan fuzz_detect     (no names: every harness)
#
# Env: FUZZ_SECONDS, FUZZ_JOBS (parallel fuzzing processes per harness,
# default 1), CLANG (default clang). New inputs go to build/fuzz/corpus_*,
# crashes to build/fuzz/crash-*; a crash fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECONDS:-20}"
jobs="${FUZZ_JOBS:-1}"
CLANG="${CLANG:-clang}"
PKGS="rdkafka avro-c libhs jansson libcurl yaml-0.1 libcrypto libmicrohttpd"
out=build/fuzz

names=("$@")
if [ "${#names[@]}" -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do
    [ -e "$f" ] && names+=("$(basename "$f" .c)")
  done
fi
[ "${#names[@]}" -gt 0 ] || { echo "fuzz: no harnesses" >&2; exit 0; }

command -v "$CLANG" >/dev/null || { echo "fuzz: $CLANG not found" >&2; exit 2; }
# shellcheck disable=SC2086
cflags="-g -O1 -std=c11 -fno-omit-frame-pointer -Icommon -Ifilters -Iconnectors \
  $(pkg-config --cflags $PKGS)"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
# shellcheck disable=SC2086
libs="$(pkg-config --libs $PKGS) -lpthread -ldl -lm"

# The library, instrumented for coverage (fuzzer-no-link): every common/,
# filters/ and connectors/ source but the command's main().
mkdir -p "$out/obj"
objs=()
for src in common/*.c filters/*.c connectors/*.c; do
  [ -e "$src" ] || continue
  [ "$src" = connectors/main.c ] && continue
  obj="$out/obj/$(echo "$src" | tr / _ | sed 's/\.c$/.o/')"
  if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] ||
     [ -n "$(find common filters connectors -name '*.h' -newer "$obj" 2>/dev/null | head -1)" ]; then
    # shellcheck disable=SC2086
    "$CLANG" $cflags $san -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
  fi
  objs+=("$obj")
done
rm -f "$out/libveil-fuzz.a"
ar rcs "$out/libveil-fuzz.a" "${objs[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

status=0
for name in "${names[@]}"; do
  src="tests/fuzz/$name.c"
  [ -e "$src" ] || { echo "fuzz: no $src" >&2; status=1; continue; }
  bin="$out/$name"
  # shellcheck disable=SC2086
  "$CLANG" $cflags $san -fsanitize=fuzzer "$src" "$out/libveil-fuzz.a" \
    $libs -o "$bin"
  seeds="tests/fuzz/corpus_${name#fuzz_}"
  work="$out/corpus_${name#fuzz_}"
  mkdir -p "$work"
  dirs=("$work")
  [ -d "$seeds" ] && dirs+=("$seeds")
  regress="tests/fuzz/regress_${name#fuzz_}"
  [ -d "$regress" ] && dirs+=("$regress")
  echo "== fuzz: $name for ${secs}s (seeds: ${seeds})"
  par=()
  [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
  if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$out/crash-$name-" \
       "${par[@]}" "${dirs[@]}"; then
    echo "fuzz: $name FAILED (artifacts: $out/crash-$name-*)" >&2
    status=1
  fi
done
exit $status
