#!/usr/bin/env bash
# run.sh - the integration tests (`make integration`): a real Kafka up, pytest, Kafka down.
#
# Env: VEIL (absolute path of the veil binary, set by make; required).
# VEIL_KAFKA_BOOTSTRAP, when set, names a Kafka to use instead of starting one.
# Extra arguments go to pytest (-k broker, -x, or test files instead of the suite).
set -uo pipefail

here="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$here" || exit 1
py="${VEIL_CACHE:-$HOME/.cache/veil}/venv/bin/python"

if [ -z "${VEIL:-}" ] || [ ! -x "$VEIL" ]; then
  echo "integration: VEIL must name the veil binary (run \`make integration\`)" >&2
  exit 2
fi
if [ ! -x "$py" ]; then
  echo "integration: no test venv at $py (run \`make deps\`)" >&2
  exit 2
fi
export VEIL

# The binary may be the ASan+UBSan build: leaks in third-party one-time
# state are suppressed, anything else fails the command that hit it.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$here/tests/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

t0=$(date +%s)
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
  echo "integration: Kafka did not start" >&2
  exit 1
fi
read -r VEIL_KAFKA_BOOTSTRAP started_kafka <<<"$ensured"
export VEIL_KAFKA_BOOTSTRAP
echo "integration: Kafka at $VEIL_KAFKA_BOOTSTRAP, veil at $VEIL" >&2

# Arguments that name files or tests replace the default of the whole suite.
paths=(tests/integration)
skip=0
for a in "$@"; do
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case "$a" in
    -k | -m | -p | -o | --deselect) skip=1 ;;
    -*) ;;
    *) paths=() ;;
  esac
done
"$py" -m pytest -q -p no:cacheprovider "$@" "${paths[@]}"
status=$?
# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
if [ "$status" -eq 5 ]; then
  echo "integration: no tests were collected" >&2
  status=1
fi
echo "integration: $(($(date +%s) - t0)) s, exit $status" >&2
exit "$status"
