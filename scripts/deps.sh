#!/usr/bin/env bash
# deps.sh - install the Debian packages Veil builds and tests with, when missing.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang clang-format libclang-rt-14-dev
  librdkafka-dev libavro-dev libhyperscan-dev libcriterion-dev
  libjansson-dev libcurl4-openssl-dev libyaml-dev libssl-dev libmicrohttpd-dev
  openssl
  kcat python3 python3-venv python3-pip
  openjdk-17-jre-headless maven curl procps
  # make deploy-check: compose validation, promtool (from prometheus),
  # man, systemd-analyze. Helm is built with the machine's Go (go install).
  docker-compose prometheus python3-yaml man-db groff-base systemd
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# A JDK or Maven installed outside Debian (e.g. a preinstalled toolchain)
# is as good as the packages.
if command -v java >/dev/null 2>&1; then
  missing=("${missing[@]/openjdk-17-jre-headless}")
fi
if command -v mvn >/dev/null 2>&1; then
  missing=("${missing[@]/maven}")
fi
read -r -a missing <<<"${missing[*]:-}"
if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Only promtool is wanted from the prometheus package: where systemd runs,
  # do not leave a Prometheus server running on the developer's machine.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# Python test clients live in a venv of Debian's python3 (PyPI packages:
# Debian has no fastavro, which Confluent's Avro serializer needs).
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${VEIL_CACHE:-$HOME/.cache/veil}"
venv="$cache/venv"
req="$here/tests/requirements.txt"
stamp="$venv/.req-$(sha256sum "$req" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "deps: creating Python test venv in $venv" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$stamp"
fi
