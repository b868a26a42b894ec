#!/usr/bin/env bash
# scan.sh - `veil scan` throughput on ~100 MB of text at two densities,
# against GNU `grep -o -E` with the same shapes (output to a file, as
# veil's) and the raw Hyperscan rate of the engine's database
# (docs/scan.md, bench/README.md). Prints `bench: NAME VALUE UNIT` lines.
#
#   sparse: the labelled corpus's mix, a finding per ~140 bytes
#   dense:  tickets, payment notes and logs in five languages, a finding
#           per ~56 bytes (scripts/gen_corpus.py --density dense)
#
# Env: VEIL_BENCH_DATA / VEIL_BENCH_DENSE (the two files, default
# /tmp/veil-bench/scan-{mixed,dense}.txt, generated when missing),
# VEIL_BENCH_MB (size to generate, default 100), VEIL_BENCH_RUNS (best of
# N, default 3), VEIL_BENCH_SPARSE=0 to skip the sparse part,
# VEIL_BENCH_OUT (the report file, default on /dev/shm).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="rdkafka avro-c libhs jansson libcurl yaml-0.1 libcrypto libmicrohttpd"
data="${VEIL_BENCH_DATA:-/tmp/veil-bench/scan-mixed.txt}"
dense="${VEIL_BENCH_DENSE:-/tmp/veil-bench/scan-dense.txt}"
mb="${VEIL_BENCH_MB:-100}"
runs="${VEIL_BENCH_RUNS:-3}"
py="${VEIL_CACHE:-$HOME/.cache/veil}/venv/bin/python"
[ -x "$py" ] || py=/usr/bin/python3
# Reports go to a file, like grep's below (VEIL_BENCH_OUT: another one):
# on tmpfs when there is one, so that the figures are the scanner's and not
# the disk's writeback (a SARIF report is ~6x the dense input).
if [ -z "${VEIL_BENCH_OUT:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  out=/dev/shm/veil-bench-scan.$$
else
  out="${VEIL_BENCH_OUT:-build/bench/scan-out}"
fi
trap 'rm -f "$out"' EXIT
# fingerprints need a secret salt; a benchmark one is fine
export VEIL_SCAN_SALT="bench-salt-$$"

[ -x build/veil ] && [ -f build/libveil.a ] || make -s build/veil
gen() { # FILE DENSITY
  if [ ! -s "$1" ]; then
    mkdir -p "$(dirname "$1")"
    "$py" scripts/gen_corpus.py --bulk "$mb" --density "$2" --out "$1"
  fi
}
[ "${VEIL_BENCH_SPARSE:-1}" = 0 ] || gen "$data" sparse
gen "$dense" dense
mkdir -p build/bench
# shellcheck disable=SC2046,SC2086
cc -O2 -g -std=c11 -Icommon $(pkg-config --cflags $PKGS) \
  -o build/bench/bench_scan bench/bench_scan.c build/libveil.a \
  $(pkg-config --libs $PKGS) -lpthread -ldl -lm

ncpu=$(nproc)

# timed CMD...: runs it with stdout to $out, sets t_real and t_cpu (user +
# sys) and rc. The machine may be shared: CPU time is the per-core figure
# that load does not inflate; wall time is what a user waits.
timed() {
  local tf=build/bench/time.txt
  rc=0
  { TIMEFORMAT='%R %U %S'; time "$@" > "$out" 2> /dev/null || rc=$?; } 2> "$tf"
  read -r t_real t_u t_s < "$tf"
  t_cpu=$(awk -v u="$t_u" -v s="$t_s" 'BEGIN { print u + s }')
}

# best_of FILE FMT JOBS: best of $runs; sets best_real, best_cpu, n_out
best_of() {
  best_real="" best_cpu=""
  for _ in $(seq "$runs"); do
    timed build/veil scan -j "$3" --format "$2" "$1"
    [ "$rc" -le 1 ] || { echo "scan.sh: veil scan failed ($rc)" >&2; exit 1; }
    if [ -z "$best_real" ] || awk -v t="$t_real" -v b="$best_real" 'BEGIN { exit !(t < b) }'; then
      best_real=$t_real
    fi
    if [ -z "$best_cpu" ] || awk -v t="$t_cpu" -v b="$best_cpu" 'BEGIN { exit !(t < b) }'; then
      best_cpu=$t_cpu
    fi
  done
  n_out=$(stat -c %s "$out")
}

mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.1f", b / 1e6 / t }'; }

# GNU grep with the engine's shapes in ERE (no validation at all, so it
# reports more than veil does); C locale is grep's fastest. Output to a
# file: with /dev/null GNU grep stops at the first match.
grep_run() {
  LC_ALL=C grep -o -E \
    -e '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b' \
    -e '(\+|\(|\b)[0-9]([ ./()-]{0,2}[0-9]){8,18}\b' \
    -e '\b[A-Z]{2}[0-9]{2}( ?[A-Z0-9]){11,30}\b' \
    -e '\b([0-9]{1,3}\.){3}[0-9]{1,3}\b' \
    -e '([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b' \
    -e '([0-9A-Fa-f]{1,4}(:[0-9A-Fa-f]{1,4}){0,6})?::([0-9A-Fa-f]{1,4}(:[0-9A-Fa-f]{1,4}){0,6}\b)?' \
    -e ':([0-9]{1,3}\.){3}[0-9]{1,3}\b' \
    "$1"
}

# ------------------------------------------------------------------ dense
bytes=$(stat -c %s "$dense")
cat "$dense" > /dev/null # page cache: measure scanning, not the disk
echo "# dense: $dense, $bytes bytes, $ncpu CPUs, best of $runs"

timed grep_run "$dense"
grep_mbps=$(mbps "$bytes" "$t_real")
grep_cpu=$(mbps "$bytes" "$t_cpu")
n_grep=$(wc -l < "$out")
echo "bench: scan_dense_grep_mbps $grep_cpu MB/s (cpu; GNU grep -o -E to a file; $n_grep matches, unvalidated; wall $grep_mbps MB/s)"

bench_out=$(build/bench/bench_scan --engine-only "$dense")
echo "$bench_out" | grep '^#' || true
raw=$(echo "$bench_out" | awk '/^bench: hs_raw_mbps/ { print $3 }')
engine=$(echo "$bench_out" | awk '/^bench: engine_mbps/ { print $3 }')
echo "bench: scan_dense_hs_raw_mbps $raw MB/s (cpu time; the engine's Hyperscan database, no-op callback)"
echo "bench: scan_dense_engine_mbps $engine MB/s (cpu time; veil_detect_scan alone, no report: the ceiling of -j 1)"

# Per core: bytes over the CPU time (user + sys) of `veil scan -j 1`; the
# ratio to grep compares CPU times too (both run on one core; wall clocks
# of a shared machine move with its load). Wall figures beside them.
for fmt in text json sarif; do
  best_of "$dense" "$fmt" 1
  n_find=$( [ "$fmt" = sarif ] && grep -c '"ruleId"' "$out" || wc -l < "$out")
  s1=$(mbps "$bytes" "$best_real")
  c1=$(mbps "$bytes" "$best_cpu")
  echo "bench: scan_dense_mbps_$fmt $c1 MB/s (per core: cpu time of -j 1, report to a file; wall $s1 MB/s; $n_find findings, report $(mbps "$n_out" 1) MB; goal >= 100)"
  awk -v s="$c1" -v g="$grep_cpu" -v sw="$s1" -v gw="$grep_mbps" -v f="$fmt" 'BEGIN {
    printf "bench: scan_dense_vs_grep_%s %.1f x (cpu time, -j 1 vs grep; wall %.1f x; goal >= 10)\n", f, s / g, sw / gw }'
  if [ "$ncpu" -gt 1 ]; then
    best_of "$dense" "$fmt" "$ncpu"
    sn=$(mbps "$bytes" "$best_real")
    echo "bench: scan_dense_mbps_${fmt}_j$ncpu $sn MB/s (wall, -j $ncpu; $(awk -v a="$s1" -v b="$sn" 'BEGIN { printf "%.2f", b / a }') x the wall of -j 1; cpu $(mbps "$bytes" "$best_cpu") MB/s per core)"
  fi
done

# ----------------------------------------------------------------- sparse
[ "${VEIL_BENCH_SPARSE:-1}" = 0 ] && exit 0
bytes=$(stat -c %s "$data")
cat "$data" > /dev/null
echo "# sparse: $data, $bytes bytes"
best_of "$data" text 1
scan=$(mbps "$bytes" "$best_cpu") # cpu time, like bench_scan's figures
scan_wall=$(mbps "$bytes" "$best_real")
n_scan=$(wc -l < "$out")
timed grep_run "$data"
grep_mbps=$(mbps "$bytes" "$t_cpu")
grep_wall=$(mbps "$bytes" "$t_real")
n_grep=$(wc -l < "$out")

bench_out=$(build/bench/bench_scan "$data")
echo "$bench_out" | grep '^#' || true
raw=$(echo "$bench_out" | awk '/^bench: hs_raw_mbps/ { print $3 }')

echo "bench: scan_mbps $scan MB/s (cpu time, -j 1, text; wall $scan_wall MB/s; $n_scan findings)"
echo "bench: grep_mbps $grep_mbps MB/s (cpu time; wall $grep_wall MB/s; $n_grep matches, unvalidated)"
echo "bench: hs_raw_mbps $raw MB/s"
echo "$bench_out" | grep '^bench:' | grep -v hs_raw_mbps
awk -v s="$scan" -v g="$grep_mbps" -v r="$raw" 'BEGIN {
  printf "bench: scan_vs_grep %.1f x (goal >= 10)\n", s / g
  printf "bench: scan_vs_hs_raw %.0f %% (goal >= 50)\n", 100 * s / r }'
