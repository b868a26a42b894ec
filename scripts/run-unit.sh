#!/usr/bin/env bash
# run-unit.sh - run each Criterion unit-test binary; fail if any fails.
set -uo pipefail
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
for t in "$@"; do
  echo "== unit: $(basename "$t")"
  if ! "$t" --jobs=2 --short-filename; then
    status=1
  fi
done
exit $status
