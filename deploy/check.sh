#!/usr/bin/env bash
# check.sh - `make deploy-check`: validates the deployment files and the
# generated docs without a container engine or a cluster (CI has neither):
#   docker-compose.yml   docker-compose config -q, its pipeline loads in veil
#   Prometheus           promtool check rules / config
#   Helm chart           helm lint --strict, helm template; the rendered
#                        pipeline loads in veil; refusals (no key, a fixed
#                        instance) fail as they should
#   man page             generated from --help, rendered by man -l without
#                        warnings, every command present
#   systemd unit         make install into a temp prefix, systemd-analyze verify
#   docs                 docs/config-reference.md is current; relative links
#                        resolve; nothing points outside the repository
# Env: VEIL (the veil binary, set by make). Helm is built once from the Go
# module proxy (go install) and cached in ~/.cache/veil/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
veil="${VEIL:?VEIL must name the veil binary (run make deploy-check)}"
cache="${VEIL_CACHE:-$HOME/.cache/veil}"
HELM_VERSION=v3.21.4
tmp="$(mktemp -d /tmp/veil-deploy-check.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fails=0
pass() { echo "deploy-check: ok   $*"; }
fail() { echo "deploy-check: FAIL $*" >&2; fails=$((fails + 1)); }
t0=$(date +%s)

# ---- docker-compose.yml -------------------------------------------------
if out="$(docker-compose -f docker-compose.yml config -q 2>&1)"; then
  pass "docker-compose config -q"
else
  fail "docker-compose config -q: $out"
fi
if "$veil" topics -c deploy/compose/veil.yaml >/dev/null 2>"$tmp/err"; then
  pass "deploy/compose/veil.yaml loads"
else
  fail "deploy/compose/veil.yaml: $(cat "$tmp/err")"
fi

# ---- Prometheus -----------------------------------------------------------
if out="$(promtool check rules deploy/prometheus/veil-alerts.yml 2>&1)"; then
  pass "promtool check rules ($(grep -o '[0-9]* rules found' <<<"$out"))"
else
  fail "promtool check rules: $out"
fi
if out="$(promtool check config --syntax-only deploy/compose/prometheus.yml 2>&1)"; then
  pass "promtool check config"
else
  fail "promtool check config: $out"
fi

# ---- Helm chart ---------------------------------------------------------------
helm="$cache/bin/helm-$HELM_VERSION"
if [ ! -x "$helm" ] && ! command -v go >/dev/null 2>&1; then
  fail "no Go toolchain: helm $HELM_VERSION cannot be built (go install)"
  helm=false
elif [ ! -x "$helm" ]; then
  echo "deploy-check: building helm $HELM_VERSION (go install, once; cached in $cache/bin)" >&2
  hb0=$(date +%s)
  mkdir -p "$cache/bin" "$tmp/gobin"
  GOBIN="$tmp/gobin" GOFLAGS=-mod=mod nice -n 10 \
    go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$tmp/gobin/helm" "$helm"
  echo "deploy-check: helm built in $(( $(date +%s) - hb0 )) s" >&2
fi
chart=deploy/helm/veil
key=(--set-string key.value=0123456789abcdef0123456789abcdef-check-only)
if out="$("$helm" lint --strict "$chart" "${key[@]}" 2>&1)"; then
  pass "helm lint --strict"
else
  fail "helm lint: $out"
fi
if "$helm" template ci "$chart" "${key[@]}" >"$tmp/chart.yaml" 2>"$tmp/err"; then
  pass "helm template ($(grep -c '^kind:' "$tmp/chart.yaml") objects)"
  if python3 - "$tmp/chart.yaml" "$tmp/pipeline.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {d["kind"]: d for d in docs}
need = {"StatefulSet", "ConfigMap", "Secret", "Service", "PodDisruptionBudget"}
assert need <= set(kinds), f"missing {sorted(need - set(kinds))}"
for d in docs:
    assert d.get("apiVersion") and d.get("metadata", {}).get("name"), d.get("kind")
sts = kinds["StatefulSet"]["spec"]
pod = sts["template"]["spec"]
assert pod["securityContext"]["runAsNonRoot"] is True
c = pod["containers"][0]
assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
init = pod["initContainers"][0]["command"]
assert init[:3] == ["install", "-m", "0600"], init
secret_vols = [v for v in pod["volumes"] if "secret" in v]
assert len(secret_vols) == 1
mounted = {m["name"] for m in c["volumeMounts"]}
assert secret_vols[0]["name"] not in mounted, "the worker must not see the Secret itself"
metrics = [d for d in docs if d["kind"] == "Service"
           and d["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true"]
assert metrics, "no metrics Service with Prometheus annotations"
open(sys.argv[2], "w").write(kinds["ConfigMap"]["data"]["veil.yaml"])
PY
  then
    pass "rendered chart: StatefulSet, ConfigMap, Secret (0600 via init), metrics Service, PDB, requests"
  else
    fail "rendered chart does not have the expected shape"
  fi
  if [ -s "$tmp/pipeline.yaml" ] && "$veil" topics -c "$tmp/pipeline.yaml" >/dev/null 2>"$tmp/err"; then
    pass "the chart's rendered pipeline loads in veil"
  else
    fail "the chart's rendered pipeline: $(cat "$tmp/err" 2>/dev/null)"
  fi
else
  fail "helm template: $(cat "$tmp/err")"
fi
if "$helm" template ci "$chart" >/dev/null 2>&1; then
  fail "helm template without a key should fail"
else
  pass "helm template refuses a release without a key"
fi
if "$helm" template ci "$chart" "${key[@]}" --set pipeline.instance=x >/dev/null 2>&1; then
  fail "helm template with pipeline.instance should fail"
else
  pass "helm template refuses a fixed instance"
fi

# ---- man page -------------------------------------------------------------------
deploy/man/gen-man.sh "$veil" >"$tmp/veil.1"
if MANWIDTH=100 man -l --warnings "$tmp/veil.1" >"$tmp/veil.txt" 2>"$tmp/err" && [ ! -s "$tmp/err" ]; then
  missing=""
  for c in $("$veil" --help | awk '/^commands:/ {on=1; next} on && /^  [a-z]/ {print $1}'); do
    grep -q "veil $c" "$tmp/veil.txt" || missing="$missing $c"
  done
  if [ -z "$missing" ]; then
    pass "man -l renders veil.1 ($(wc -l <"$tmp/veil.txt") lines, every command)"
  else
    fail "man page lacks:$missing"
  fi
else
  fail "man -l: $(cat "$tmp/err")"
fi

# ---- make install + systemd unit -----------------------------------------------
if make --no-print-directory -s install PREFIX="$tmp/usr" >"$tmp/err" 2>&1; then
  for f in bin/veil share/man/man1/veil.1 share/doc/veil/veil.example.yaml lib/systemd/system/veil@.service; do
    [ -e "$tmp/usr/$f" ] || fail "make install did not install $f"
  done
  pass "make install PREFIX=…"
  if out="$(MANPATH="$tmp/usr/share/man" systemd-analyze verify \
              "$tmp/usr/lib/systemd/system/veil@.service" 2>&1)"; then
    pass "systemd-analyze verify veil@.service"
  else
    fail "systemd-analyze verify: $out"
  fi
else
  fail "make install: $(cat "$tmp/err")"
fi

# ---- docs ---------------------------------------------------------------------------
if "$veil" config-reference >"$tmp/ref.md" 2>"$tmp/err" && cmp -s "$tmp/ref.md" docs/config-reference.md; then
  pass "docs/config-reference.md is current"
else
  fail "docs/config-reference.md is stale (run make config-reference): $(cat "$tmp/err")"
fi
if python3 - "$repo" <<'PY'
import os, re, sys
repo = sys.argv[1]
bad = []
files = ["README.md"] + [os.path.join(d, f) for d, _, fs in os.walk("docs")
                         for f in fs if f.endswith(".md")]
for path in files:
    text = open(path).read()
    if "../shared" in text:
        bad.append(f"{path}: points to ../shared")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(path), target))):
            bad.append(f"{path}: broken link {target}")
if bad:
    print("\n".join(bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
then
  pass "README and docs: links resolve, nothing outside the repository"
else
  fail "README/docs links"
fi

# ---- the CI examples (docs/examples) ---------------------------------------------
# Run the shell gate on a small repository: clean, a planted address, an
# unclassified field. The Actions workflow must at least parse and upload SARIF.
ex="$tmp/example"
mkdir -p "$ex/src"
cp -r schemas "$ex/schemas"
sed 's#url: file://../schemas#url: file://schemas#' config/veil.yaml >"$ex/veil.yaml"
echo 'int main(void) { return 0; }' >"$ex/src/main.c"
run_example() { (cd "$ex" && VEIL="$veil" "$repo/docs/examples/veil-ci.sh" veil.yaml src >"$tmp/ex.out" 2>&1); }
r1=0; run_example || r1=$?
echo 'const char *owner = "ada.lovelace@example.org";' >>"$ex/src/main.c"
r2=0; run_example || r2=$?
r2s=0; grep -q '"ruleId": *"email"' "$ex/veil-scan.sarif" 2>/dev/null || r2s=$?
sed -i 's/^const char \*owner.*//' "$ex/src/main.c"
sed -i '/^      referrer: internal/d' "$ex/veil.yaml"
r3=0; run_example || r3=$?
if [ "$r1" = 0 ] && [ "$r2" = 1 ] && [ "$r2s" = 0 ] && [ "$r3" = 1 ]; then
  pass "docs/examples/veil-ci.sh: clean 0, leak 1 (SARIF), unclassified field 1"
else
  fail "docs/examples/veil-ci.sh: exits $r1/$r2/$r3 (want 0/1/1), sarif $r2s: $(tail -5 "$tmp/ex.out")"
fi
if python3 - docs/examples/github-actions.yml <<'PY'
import sys, yaml
wf = yaml.safe_load(open(sys.argv[1]))
steps = wf["jobs"]["veil"]["steps"]
runs = " ".join(s.get("run", "") for s in steps)
assert "veil check" in runs and "--format sarif" in runs
assert any(s.get("uses", "").startswith("github/codeql-action/upload-sarif") for s in steps)
assert wf["permissions"]["security-events"] == "write"
PY
then
  pass "docs/examples/github-actions.yml: check, scan, SARIF upload"
else
  fail "docs/examples/github-actions.yml"
fi

echo "deploy-check: $(( $(date +%s) - t0 )) s, $fails failure(s)"
[ "$fails" = 0 ]
