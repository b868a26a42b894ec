#!/usr/bin/env bash
# run.sh - the crash test (`make chaos`): a real Kafka up (VEIL_KAFKA_PORT,
# VEIL_STATE honoured, as for the integration tests), tests/chaos/chaos.py,
# Kafka down again if this script started it.
#
# Env: VEIL (the veil binary, set by make; required); VEIL_KAFKA_BOOTSTRAP to
# use a running Kafka instead; CHAOS_SEED, CHAOS_KILLS, CHAOS_RECORDS (see
# chaos.py). Extra arguments go to chaos.py.
set -uo pipefail

here="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$here" || exit 1
py="${VEIL_CACHE:-$HOME/.cache/veil}/venv/bin/python"

if [ -z "${VEIL:-}" ] || [ ! -x "$VEIL" ]; then
  echo "chaos: VEIL must name the veil binary (run \`make chaos\`)" >&2
  exit 2
fi
if [ ! -x "$py" ]; then
  echo "chaos: no test venv at $py (run \`make deps\`)" >&2
  exit 2
fi
export VEIL
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$here/tests/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

started_kafka=0
cleanup() {
  if [ "$started_kafka" = 1 ]; then
    scripts/kafka.sh down || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A broker someone started by hand (make kafka-up) or named with
# VEIL_KAFKA_BOOTSTRAP is theirs to stop; one started here is stopped here,
# whatever happens to the run.
if ! ensured="$(scripts/kafka.sh ensure)"; then
  echo "chaos: Kafka did not start" >&2
  exit 2
fi
read -r VEIL_KAFKA_BOOTSTRAP started_kafka <<<"$ensured"
export VEIL_KAFKA_BOOTSTRAP
t0=$(date +%s)
# CHAOS_SCRIPT=soak runs the soak (make soak) with the same Kafka handling.
"$py" "tests/chaos/${CHAOS_SCRIPT:-chaos}.py" "$@"
status=$?
echo "chaos: $(($(date +%s) - t0)) s, exit $status" >&2
exit "$status"
