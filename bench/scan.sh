#!/usr/bin/env bash
# scan.sh - `veil scan` throughput on ~100 MB of mixed text, against GNU
# `grep -o -b -E` with the same shapes and the raw Hyperscan rate of the
# engine's database (bench/README.md). Prints `bench: NAME VALUE UNIT` lines.
#
# Env: VEIL_BENCH_DATA (default /tmp/veil-bench/scan-mixed.txt, generated
# when missing), VEIL_BENCH_MB (size to generate, default 100).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="rdkafka avro-c libhs jansson libcurl yaml-0.1 libcrypto libmicrohttpd"
data="${VEIL_BENCH_DATA:-/tmp/veil-bench/scan-mixed.txt}"
mb="${VEIL_BENCH_MB:-100}"
py="${VEIL_CACHE:-$HOME/.cache/veil}/venv/bin/python"
[ -x "$py" ] || py=/usr/bin/python3

[ -x build/veil ] && [ -f build/libveil.a ] || make -s build/veil
if [ ! -s "$data" ]; then
  mkdir -p "$(dirname "$data")"
  "$py" scripts/gen_corpus.py --bulk "$mb" --out "$data"
fi
mkdir -p build/bench
# shellcheck disable=SC2046,SC2086
cc -O2 -g -std=c11 -Icommon $(pkg-config --cflags $PKGS) \
  -o build/bench/bench_scan bench/bench_scan.c build/libveil.a \
  $(pkg-config --libs $PKGS) -lpthread -ldl -lm

bytes=$(stat -c %s "$data")
cat "$data" > /dev/null # page cache: measure scanning, not the disk

now() { date +%s.%N; }
mbps() { awk -v b="$bytes" -v t="$1" 'BEGIN { printf "%.1f", b / 1e6 / t }'; }

# best of three: `veil scan` end to end (mmap, scan, line mapping, output)
best=""
for _ in 1 2 3; do
  t0=$(now)
  # through a pipe, like grep below (GNU grep stops at the first match
  # when its output is /dev/null)
  n_scan=$( { build/veil scan --format text "$data"
               echo $? > build/bench/scan.rc; } | wc -l)
  rc=$(cat build/bench/scan.rc)
  [ "$rc" -le 1 ] || { echo "scan.sh: veil scan failed ($rc)" >&2; exit 1; }
  t1=$(now)
  t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  if [ -z "$best" ] || awk -v t="$t" -v b="$best" 'BEGIN { exit !(t < b) }'; then
    best=$t
  fi
done
scan=$(mbps "$best")

# GNU grep with the engine's shapes in ERE (no validation at all, so it
# reports more than veil does); C locale is grep's fastest.
t0=$(now)
n_grep=$(LC_ALL=C grep -o -b -E \
  -e '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b' \
  -e '(\+|\(|\b)[0-9]([ ./()-]{0,2}[0-9]){8,18}\b' \
  -e '\b[A-Z]{2}[0-9]{2}( ?[A-Z0-9]){11,30}\b' \
  -e '\b([0-9]{1,3}\.){3}[0-9]{1,3}\b' \
  -e '([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b' \
  -e '([0-9A-Fa-f]{1,4}(:[0-9A-Fa-f]{1,4}){0,6})?::([0-9A-Fa-f]{1,4}(:[0-9A-Fa-f]{1,4}){0,6}\b)?' \
  -e ':([0-9]{1,3}\.){3}[0-9]{1,3}\b' \
  "$data" | wc -l)
t1=$(now)
grep_t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
grep_mbps=$(mbps "$grep_t")

out=$(build/bench/bench_scan "$data")
echo "$out" | grep '^#' || true
raw=$(echo "$out" | awk '/^bench: hs_raw_mbps/ { print $3 }')

echo "bench: scan_mbps $scan MB/s ($n_scan findings)"
echo "bench: grep_mbps $grep_mbps MB/s ($n_grep matches, unvalidated)"
echo "bench: hs_raw_mbps $raw MB/s"
echo "$out" | grep '^bench:' | grep -v hs_raw_mbps
awk -v s="$scan" -v g="$grep_mbps" -v r="$raw" 'BEGIN {
  printf "bench: scan_vs_grep %.1f x (goal >= 10)\n", s / g
  printf "bench: scan_vs_hs_raw %.0f %% (goal >= 50)\n", 100 * s / r }'
