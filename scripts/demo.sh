#!/usr/bin/env bash
# demo.sh - `make demo`: arrives with the worker (issue 5). Until then,
# show what Veil can already do on the demo pipeline: `veil check`.
set -uo pipefail
cd "$(dirname "$0")/.."
echo "The streaming demo arrives with the worker (veil run). Meanwhile:"
echo "\$ build/veil check -c config/veil.yaml"
build/veil check -c config/veil.yaml
exit 0
