#!/usr/bin/env bash
# bench.sh - run every benchmark under bench/ (each prints `bench: NAME VALUE UNIT`).
#   scripts/bench.sh [NAME...]   only bench/NAME.sh (e.g. `scripts/bench.sh e2e`)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all
status=0
only=" $* "
for b in bench/*.sh; do
  [ -e "$b" ] || continue
  if [ $# -gt 0 ] && [[ "$only" != *" $(basename "$b" .sh) "* ]]; then continue; fi
  echo "== $b"
  bash "$b" || status=1
done
exit $status
