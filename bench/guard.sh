#!/usr/bin/env bash
# guard.sh - what the egress leak guard costs inside the filter chain, on
# the end-to-end bench's records and config/veil.yaml as shipped, guard off
# against on in the same run (bench/bench_guard.c; no Kafka). The worker's
# throughput figure (guard_overhead_pct) is bench/e2e.sh's.
#
# Env: VEIL_BENCH_SECONDS (per chain, default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${VEIL_CACHE:-$HOME/.cache/veil}/venv/bin/python"
[ -x "$py" ] || { echo "guard: no venv at $py (run make deps)" >&2; exit 2; }

PKGS="rdkafka avro-c libhs jansson libcurl yaml-0.1 libcrypto libmicrohttpd"
make -s build/veil
mkdir -p build/bench
# shellcheck disable=SC2046,SC2086
cc -O2 -g -std=c11 -Wall -Wextra -Werror -Icommon -Ifilters \
  $(pkg-config --cflags $PKGS) -o build/bench/bench_guard bench/bench_guard.c \
  build/libveil.a $(pkg-config --libs $PKGS) -lpthread -ldl -lm

tmp="$(mktemp -d /tmp/veil-bench-guard.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
"$py" bench/guard_data.py "$tmp" build/veil
# one core, as bench/plan.sh
taskset -c 0 build/bench/bench_guard "$tmp/off.yaml" "$tmp/on.yaml" \
  "$tmp/values.bin" "${VEIL_BENCH_SECONDS:-4}"
