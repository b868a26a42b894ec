#!/usr/bin/env bash
# e2e.sh - the worker end to end through the real single-node Kafka 4.1.1
# (scripts/kafka.sh up): `veil run` with config/veil.yaml as shipped, on 16
# source partitions, beside an exactly-once copy of the same source to two
# topics (bench/copy.c) timed in the same run on the same broker; then the
# same on 2 partitions, and the latency at a steady rate. bench/e2e.py does
# the work; bench/README.md says what each `bench:` line means.
#
# Env: VEIL_BENCH_RECORDS (records in each source, default 200000),
# VEIL_BENCH_ROUNDS (timed rounds, best kept, 2), VEIL_BENCH_RATE (latency
# run, records/s, 10000), VEIL_BENCH_LATENCY_S (20), VEIL_BENCH_PERF (a
# path: also profile one extra 16-partition Veil run with `perf record -g`
# and print its top symbols; that run is not a figure), VEIL_BENCH_PERF_AUDIT
# (record or batch: that run's audit level; default as shipped),
# VEIL_BENCH_PERF_GUARD (non-empty: that run with the leak guard on),
# VEIL_BENCH_ONLY=guard (only the leak guard's comparison: VEIL_BENCH_GUARD_ROUNDS
# back-to-back pairs, default 3), VEIL_BENCH_ONLY=shred (only crypto-shredding's comparison: marketing's
# email and name encrypted per subject vs per purpose, same records, over
# VEIL_BENCH_SHRED_KEYS distinct subjects, default records / 2),
# VEIL_BENCH_ONLY=ab with VEIL_BENCH_AB_VEIL=PATH (this build against another
# veil binary, the shipped config on both, VEIL_BENCH_GUARD_ROUNDS pairs:
# ab_overhead_pct is what this build costs over that one).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${VEIL_CACHE:-$HOME/.cache/veil}/venv/bin/python"
[ -x "$py" ] || { echo "e2e: no venv at $py (run make deps)" >&2; exit 2; }

# A broker someone started (make kafka-up, the tests) is theirs; one
# started here is stopped here.
started_kafka=0
scripts/kafka.sh status >/dev/null 2>&1 || started_kafka=1
bootstrap="$(scripts/kafka.sh up)"
make -s build/veil
mkdir -p build/bench
# shellcheck disable=SC2046
cc -O2 -g -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags rdkafka) \
  -o build/bench/copy bench/copy.c $(pkg-config --libs rdkafka) -lpthread

tmp="$(mktemp -d /tmp/veil-bench-e2e.XXXXXX)"
cleanup() {
  rm -rf "$tmp"
  if [ "$started_kafka" = 1 ]; then scripts/kafka.sh down || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

perf_args=()
if [ -n "${VEIL_BENCH_PERF:-}" ]; then
  command -v perf >/dev/null || { echo "e2e: VEIL_BENCH_PERF needs perf (Debian: linux-perf)" >&2; exit 2; }
  perf_args=(--perf "$VEIL_BENCH_PERF")
fi
if [ -n "${VEIL_BENCH_PERF_AUDIT:-}" ]; then perf_args+=(--perf-audit "$VEIL_BENCH_PERF_AUDIT"); fi
if [ -n "${VEIL_BENCH_PERF_GUARD:-}" ]; then perf_args+=(--perf-guard); fi
if [ -n "${VEIL_BENCH_ONLY:-}" ]; then perf_args+=(--only "$VEIL_BENCH_ONLY"); fi
if [ -n "${VEIL_BENCH_GUARD_ROUNDS:-}" ]; then perf_args+=(--guard-rounds "$VEIL_BENCH_GUARD_ROUNDS"); fi
if [ -n "${VEIL_BENCH_AB_VEIL:-}" ]; then perf_args+=(--ab-veil "$VEIL_BENCH_AB_VEIL"); fi
if [ -n "${VEIL_BENCH_SHRED_KEYS:-}" ]; then perf_args+=(--shred-keys "$VEIL_BENCH_SHRED_KEYS"); fi
t0=$(date +%s)
"$py" bench/e2e.py --bootstrap "$bootstrap" --veil "$PWD/build/veil" \
  --copy "$PWD/build/bench/copy" --tmp "$tmp" \
  --records "${VEIL_BENCH_RECORDS:-200000}" --rounds "${VEIL_BENCH_ROUNDS:-2}" \
  --rate "${VEIL_BENCH_RATE:-10000}" --latency-s "${VEIL_BENCH_LATENCY_S:-20}" \
  "${perf_args[@]}"
echo "e2e: done in $(($(date +%s) - t0)) s" >&2
if [ -n "${VEIL_BENCH_PERF:-}" ]; then
  echo "e2e: perf profile of the worker ($VEIL_BENCH_PERF), top symbols (self):" >&2
  perf report -i "$VEIL_BENCH_PERF" --stdio --no-children --sort dso,symbol \
    --percent-limit 0.5 -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25 >&2
fi
