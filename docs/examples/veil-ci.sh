#!/usr/bin/env bash
# veil-ci.sh - a CI gate with Veil for the repository that owns a pipeline:
# fails when a source schema has a field the policy does not classify (or
# another policy gap: an expired licence, a transform that cannot apply…),
# or when the repository holds personal data that is not in the baseline.
#
#   veil-ci.sh [PIPELINE] [PATH…]
#     PIPELINE  the pipeline file (default: veil.yaml); its registry must be
#               reachable from CI (a registry URL, or file://schemas)
#     PATH      what to scan (default: .)
#   Env: VEIL (the veil binary, default: veil on PATH),
#        VEIL_SCAN_BASELINE (default .veil-scan-baseline.json: findings
#        accepted earlier, from `veil scan --format json`; new ones fail),
#        VEIL_SARIF (default veil-scan.sarif: the report to upload).
# Exit: 0 clean, 1 policy gaps or new findings, 2 a tool error.
set -uo pipefail
veil="${VEIL:-veil}"
pipeline="${1:-veil.yaml}"
[ "$#" -gt 0 ] && shift
paths=("$@")
[ "${#paths[@]}" -gt 0 ] || paths=(.)
baseline="${VEIL_SCAN_BASELINE:-.veil-scan-baseline.json}"
sarif="${VEIL_SARIF:-veil-scan.sarif}"
rc=0

echo "== veil check -c $pipeline"
"$veil" check -c "$pipeline"
check=$?
case "$check" in
  0) echo "veil check: clean" ;;
  1) echo "veil check: policy gaps (above): classify the fields before deploying"; rc=1 ;;
  *) echo "veil check: error ($check)"; exit 2 ;;
esac

echo "== veil scan --format sarif ${paths[*]}"
base=()
[ -f "$baseline" ] && base=(--baseline "$baseline")
# Written outside the scanned tree first, so the report is not scanned.
tmp="$(mktemp)"
"$veil" scan --format sarif "${base[@]}" "${paths[@]}" >"$tmp"
scan=$?
mv "$tmp" "$sarif"
case "$scan" in
  0) echo "veil scan: no new personal data" ;;
  1) echo "veil scan: personal data found (SARIF: $sarif; values are never printed):"
     "$veil" scan "${base[@]}" "${paths[@]}" | head -50
     rc=1 ;;
  *) echo "veil scan: error ($scan)"; exit 2 ;;
esac
exit "$rc"
