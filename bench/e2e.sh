#!/usr/bin/env bash
# e2e.sh - the worker end to end through the real single-node Kafka
# (scripts/kafka.sh up): `veil run` with config/veil.yaml as shipped (audit,
# DLQ, retention ledger and metrics on), two purposes routed, against
# bench/passthrough.c (same librdkafka settings, batching and transactions,
# records copied unchanged to two topics). Then the latency from a source
# record's timestamp to its committed output at a steady rate.
#
# Prints `bench: e2e_rps N rec/s`, `bench: passthrough_rps N rec/s`,
# `bench: e2e_ratio R`, `bench: latency_p50_ms N ms`, `bench: latency_p99_ms N ms`
# (Veil), and the passthrough's latency for comparison.
#
# Env: VEIL_BENCH_RECORDS (timed records per run, default 300000),
# VEIL_BENCH_WARMUP (records through each pipeline before timing, 200000),
# VEIL_BENCH_ROUNDS (timed runs of each, best kept, 3),
# VEIL_BENCH_RATE (latency run, records/s, 10000), VEIL_BENCH_LATENCY_S (25).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
py="${VEIL_CACHE:-$HOME/.cache/veil}/venv/bin/python"
N="${VEIL_BENCH_RECORDS:-300000}"
WARM="${VEIL_BENCH_WARMUP:-200000}"
ROUNDS="${VEIL_BENCH_ROUNDS:-3}"
RATE="${VEIL_BENCH_RATE:-10000}"
LAT_S="${VEIL_BENCH_LATENCY_S:-25}"
P=2

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
  -o build/bench/passthrough bench/passthrough.c $(pkg-config --libs rdkafka)

tmp="$(mktemp -d /tmp/veil-bench-e2e.XXXXXX)"
worker_pid=""
watcher_pid=""
created=()
cleanup() {
  if [ -n "$watcher_pid" ]; then
    kill "$watcher_pid" 2>/dev/null || true
    wait "$watcher_pid" 2>/dev/null || true
  fi
  if [ -n "$worker_pid" ]; then
    kill "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  if [ "${#created[@]}" -gt 0 ]; then
    "$py" bench/e2e.py --bootstrap "$bootstrap" topics delete "${created[@]}" \
      >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  if [ "$started_kafka" = 1 ]; then scripts/kafka.sh down || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

e2e() { "$py" bench/e2e.py --bootstrap "$bootstrap" "$@"; }
json() { "$py" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
free_port() { "$py" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }

cp -r schemas "$tmp/reg"
run=0

# Fresh topics for one run; sets PRE to their prefix.
topics_for() {
  local pre="vb-$$-$run-$1" t
  run=$((run + 1))
  local names=("$pre.customers" "$pre.analytics" "$pre.marketing")
  if [ "$1" = veil ]; then
    names+=("$pre.dlq" "$pre.audit" "$pre.ledger" "$pre.erasure")
  fi
  e2e topics create --partitions "$P" "${names[@]}"
  for t in "${names[@]}"; do created+=("$t"); done
  PRE="$pre"
}

start_worker() { # kind prefix
  if [ "$1" = veil ]; then
    e2e config --prefix "$2" --registry "$tmp/reg" --metrics-port "$(free_port)" \
      >"$tmp/$2.yaml"
    "$repo/build/veil" run -c "$tmp/$2.yaml" 2>"$tmp/$2.log" &
  else
    build/bench/passthrough "$bootstrap" "$2-g" "$2-txn" "$2.customers" \
      "$2.analytics" "$2.marketing" 100 10000 2>"$tmp/$2.log" &
  fi
  worker_pid=$!
}

stop_worker() {
  kill -TERM "$worker_pid"
  wait "$worker_pid" || { echo "e2e: worker exited $?" >&2; tail -5 "$tmp"/*.log >&2; exit 1; }
  worker_pid=""
}

# One throughput run: N records produced first, then the worker drains
# them; RESULT = records/s between its first and its last commit. Not run
# in a subshell, so the cleanup trap knows the worker and the topics.
throughput() { # kind count
  local pre out
  created=()
  topics_for "$1"
  pre="$PRE"
  e2e produce --topic "$pre.customers" --count "$2" --registry "$tmp/reg"
  # The watcher runs before the worker starts, so it sees the first commit.
  e2e throughput --topic "$pre.customers" --group "$pre-g" --count "$2" \
    >"$tmp/rps.json" &
  watcher_pid=$!
  sleep 1
  start_worker "$1" "$pre"
  wait "$watcher_pid" || { echo "e2e: measuring $1 failed" >&2; tail -5 "$tmp/$pre.log" >&2; exit 1; }
  watcher_pid=""
  out="$(cat "$tmp/rps.json")"
  stop_worker
  e2e topics delete "${created[@]}" >/dev/null 2>&1 || true
  created=()
  RESULT="$(echo "$out" | json rps)"
}

echo "e2e: Kafka at $bootstrap; warming up with $WARM records through each pipeline" >&2
throughput passthrough "$WARM"
w1="$RESULT"
throughput veil "$WARM"
echo "e2e: warm-up: passthrough $w1 rec/s, veil $RESULT rec/s" >&2

best_p=0
best_v=0
for r in $(seq 1 "$ROUNDS"); do
  throughput passthrough "$N"
  p="$RESULT"
  throughput veil "$N"
  v="$RESULT"
  echo "e2e: round $r: passthrough $p rec/s, veil $v rec/s ($N records)" >&2
  [ "$p" -gt "$best_p" ] && best_p="$p"
  [ "$v" -gt "$best_v" ] && best_v="$v"
done
echo "bench: e2e_rps $best_v rec/s"
echo "bench: passthrough_rps $best_p rec/s"
echo "bench: e2e_ratio $("$py" -c "print(round($best_v / $best_p, 2))")"

# Latency: the worker waits on an empty source, then a steady stream;
# RESULT = the reader's JSON line.
latency() { # kind
  local pre out i
  created=()
  topics_for "$1"
  pre="$PRE"
  start_worker "$1" "$pre"
  # The group's first assignment, then the stream (veil logs it; the
  # passthrough gets a moment).
  for i in $(seq 1 300); do
    if [ "$1" != veil ] || grep -q '"event":"assign"' "$tmp/$pre.log" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  if [ "$1" != veil ]; then sleep 3; fi
  out="$(e2e latency --source "$pre.customers" --out "$pre.analytics" \
    --registry "$tmp/reg" --rate "$RATE" --seconds "$LAT_S" --warmup 3)"
  stop_worker
  e2e topics delete "${created[@]}" >/dev/null 2>&1 || true
  created=()
  echo "e2e: $1 latency at $RATE rec/s for $LAT_S s: $out" >&2
  RESULT="$out"
}

latency passthrough
pl="$RESULT"
latency veil
echo "bench: latency_p50_ms $(echo "$RESULT" | json p50) ms"
echo "bench: latency_p99_ms $(echo "$RESULT" | json p99) ms"
echo "bench: passthrough_latency_p50_ms $(echo "$pl" | json p50) ms"
echo "bench: passthrough_latency_p99_ms $(echo "$pl" | json p99) ms"
