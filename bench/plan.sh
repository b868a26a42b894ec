#!/usr/bin/env bash
# plan.sh - records/s of the plan path against the avro-c generic path on
# the reference customer record (schemas/customers-value.avsc) licensed to
# two purposes, and heap allocations per record (bench/bench_plan.c).
# Prints `bench: NAME VALUE UNIT` lines.
#
# Env: VEIL_BENCH_SECONDS (per path, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="rdkafka avro-c libhs jansson libcurl yaml-0.1 libcrypto libmicrohttpd"
[ -f build/libveil.a ] || make -s build/veil
mkdir -p build/bench
# shellcheck disable=SC2046,SC2086
cc -O2 -g -std=c11 -Icommon -Itests/unit $(pkg-config --cflags $PKGS) \
  -o build/bench/bench_plan bench/bench_plan.c tests/unit/support_avro_ref.c \
  tests/unit/support_plan_fixture.c \
  build/libveil.a $(pkg-config --libs $PKGS) -lpthread -ldl -lm
# one core: the number is per core, and the other one runs the JVM broker
# in real deployments
exec taskset -c 0 build/bench/bench_plan "${VEIL_BENCH_SECONDS:-2}"
