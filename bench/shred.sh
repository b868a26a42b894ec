#!/usr/bin/env bash
# shred.sh - crypto-shredding per-record cost and cache bytes
# (bench/bench_shred.c). Prints `bench:` lines.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="rdkafka avro-c libhs jansson libcurl yaml-0.1 libcrypto libmicrohttpd"
[ -f build/libveil.a ] || make -s build/veil
mkdir -p build/bench
# shellcheck disable=SC2046,SC2086
cc -O2 -g -std=c11 -Icommon $(pkg-config --cflags $PKGS) \
  -o build/bench/bench_shred bench/bench_shred.c build/libveil.a \
  $(pkg-config --libs $PKGS) -lpthread -ldl -lm
exec taskset -c 0 build/bench/bench_shred
