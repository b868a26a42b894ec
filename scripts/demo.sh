#!/usr/bin/env bash
# demo.sh - `make demo`: a dev broker (`veil broker`), a file:// registry
# copied from schemas/, ~20 generated customers plus malformed records and an
# upstream delete, `veil run` over config/veil.yaml, and a side-by-side view
# of what each purpose received. Finishes by itself and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
veil="${VEIL:-$repo/build/veil}"
py="${VEIL_CACHE:-$HOME/.cache/veil}/venv/bin/python"
[ -x "$veil" ] || { echo "demo: build/veil is missing (run make)" >&2; exit 2; }
[ -x "$py" ] || { echo "demo: no venv at $py (run make deps)" >&2; exit 2; }

tmp="$(mktemp -d /tmp/veil-demo.XXXXXX)"
broker_pid=""
worker_pid=""
cleanup() {
  [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. The dev broker, every topic of the pipeline created up front.
topics=(customers customers.analytics customers.marketing customers.support
        veil.dlq veil.audit veil.retention veil.erasure)
args=()
for t in "${topics[@]}"; do args+=(--topic "$t:1"); done
mkfifo "$tmp/broker.out"
"$veil" broker "${args[@]}" >"$tmp/broker.out" 2>"$tmp/broker.err" &
broker_pid=$!
exec 3<"$tmp/broker.out"
if ! read -r -t 20 bootstrap <&3; then
  echo "demo: veil broker did not start:" >&2
  cat "$tmp/broker.err" >&2
  exit 1
fi
# Keep draining the broker's stdout so it never blocks on a full pipe.
cat <&3 >/dev/null &
echo "demo: veil broker at $bootstrap"

# 2. The registry: a private copy of schemas/ (registrations of the derived
# schemas land there, not in the repository).
cp -r schemas "$tmp/registry"
# Veil refuses a key file others may read, and git keeps no file mode: the
# demo uses an owner-only copy of the dev key.
install -m 600 config/dev-hmac.key "$tmp/dev-hmac.key"
# 3. The pipeline: config/veil.yaml pointed at the broker and the copy;
# support keeps its data 10 s instead of 12 h, so its deadlines pass during
# the demo; one pipeline, because the dev broker keeps no transactional
# offset commits (a partition moving between two pipelines would be read
# again from its start; see docs/testing.md).
sed -e "s#^  bootstrap.servers: .*#  bootstrap.servers: $bootstrap#" \
    -e "s#retention: 12h#retention: 10s#" \
    -e "s#url: file://../schemas#url: file://$tmp/registry#" \
    -e "s#hmac_key_file: dev-hmac.key#hmac_key_file: $tmp/dev-hmac.key#" \
    -e "/^metrics:/d" config/veil.yaml >"$tmp/veil.yaml"
echo "threads: 1" >>"$tmp/veil.yaml"

# 4. Sample customers in Confluent framing (the schema id comes from the
# registry's manifest), plus two malformed records and one upstream delete.
echo "demo: producing 20 customers, 2 malformed records, 1 tombstone"
"$py" scripts/demo_produce.py --bootstrap "$bootstrap" --registry "$tmp/registry" \
  --count 20 --malformed --tombstone >/dev/null

# 5. The worker, until support's keys have reached their deadlines (its
# retention is 10 s here): every record licensed, then a tombstone
# (veil.reason=retention) for each key support still holds. SIGTERM commits
# and leaves.
echo "demo: \$ veil run -c config/veil.yaml   (logs: JSON lines, never values;" \
     "support's retention is 10 s here)"
"$veil" run -c "$tmp/veil.yaml" 2>"$tmp/worker.log" &
worker_pid=$!
# A licence past its date is said as such ("licence LIC-… expired on …",
# veil run's own words), first thing: its purpose then receives nothing,
# so there would be no retention to wait for.
expired_licences() {
  "$py" -c '
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    if ev.get("event") == "license-expired":
        print(ev.get("msg", ""))
' "$tmp/worker.log"
}
for _ in $(seq 1 50); do
  grep -q '"event":"\(license-expired\|start\|fatal\)"' "$tmp/worker.log" 2>/dev/null && break
  sleep 0.1
done
expired="$(expired_licences)"
if [ -n "$expired" ]; then
  while IFS= read -r m; do echo "demo: $m" >&2; done <<<"$expired"
  if grep -q "purpose support " <<<"$expired"; then
    echo "demo: support's licence has expired, so it gets no data and there is" \
         "no retention to show; extend its valid_until in config/veil.yaml" >&2
    exit 1
  fi
fi
if ! "$py" scripts/demo_produce.py wait-retention --bootstrap "$bootstrap" \
       --topic customers.support --timeout 45; then
  expired="$(expired_licences)"
  if [ -n "$expired" ]; then
    while IFS= read -r m; do echo "demo: $m" >&2; done <<<"$expired"
  else
    echo "demo: support's retention tombstones did not all come in 45 s" >&2
  fi
  tail -20 "$tmp/worker.log" >&2
  exit 1
fi
kill -TERM "$worker_pid"
status=0
wait "$worker_pid" || status=$?
worker_pid=""
grep -E '"event":"(start|dlq|stop)"' "$tmp/worker.log" | sed 's/^/  /' || true
if [ "$status" != 0 ]; then
  echo "demo: veil run exited $status" >&2
  tail -20 "$tmp/worker.log" >&2
  exit 1
fi

# 6. The view.
"$py" scripts/demo_produce.py show --bootstrap "$bootstrap" --registry "$tmp/registry" \
  --purpose analytics=customers.analytics --purpose marketing=customers.marketing \
  --purpose support=customers.support
echo
echo "demo: done (the dev broker keeps aborted transactions visible; see docs/design.md)"
