#!/usr/bin/env bash
# retention.sh - the retention index at a million keys (bench/bench_retention.c):
# resident bytes per tracked key, restoring 1M ledger records, tombstones/s
# when 1M deadlines pass at once, each with a plain baseline from the same
# run (bench/README.md, "Retention"). Prints `bench: NAME VALUE UNIT` lines.
#
# Env: VEIL_BENCH_RUNS (timed measurements are best of this many, default 3).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="rdkafka avro-c libhs jansson libcurl yaml-0.1 libcrypto libmicrohttpd"
[ -f build/libveil.a ] || make -s build/veil
mkdir -p build/bench
# shellcheck disable=SC2046,SC2086
cc -O2 -g -std=c11 -Icommon $(pkg-config --cflags $PKGS) \
  -o build/bench/bench_retention bench/bench_retention.c build/libveil.a \
  $(pkg-config --libs $PKGS) -lpthread -ldl -lm
# one core: the other one runs the JVM broker in real deployments
exec taskset -c 0 build/bench/bench_retention "${VEIL_BENCH_RUNS:-3}"
