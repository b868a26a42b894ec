#!/usr/bin/env bash
# bench.sh - run every benchmark under bench/ (each prints `bench: NAME VALUE UNIT`).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all
status=0
for b in bench/*.sh; do
  [ -e "$b" ] || continue
  echo "== $b"
  bash "$b" || status=1
done
exit $status
