#!/usr/bin/env bash
# Installs every Debian package Petrel's build and tests need. Idempotent; run as root
# on a fresh Debian 12 machine (it runs apt-get update itself, only when something is missing).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost1.81-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev libpq-dev
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev googletest libcli11-dev
  postgresql-15 postgresql-client-15 postgresql-contrib
  etcd-server golang-go rsync jq curl procps iproute2 util-linux
  golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
  prometheus
)
# Node.js is only for the node-postgres client tests; keep a Node that is already there
# (Debian's npm conflicts with a non-Debian node).
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No package may start its daemon while installing (Debian's policy-rc.d protocol, 101 =
  # action forbidden): tests start their own servers on loopback.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The prometheus package's own service is not used (tests run `prometheus` themselves): keep it
# stopped and off at boot, whichever init system is there.
if [[ -d /run/systemd/system ]] && systemctl list-unit-files prometheus.service >/dev/null 2>&1; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/prometheus ]]; then
  if /etc/init.d/prometheus status >/dev/null 2>&1; then /etc/init.d/prometheus stop >/dev/null || true; fi
  update-rc.d prometheus disable >/dev/null 2>&1 || true
fi

# The Debian cluster that postgresql-15 creates would hold 5432; Petrel never uses it.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | awk '$4=="online"{print $1, $2}' | while read -r v c; do
    pg_ctlcluster "$v" "$c" stop || true
  done
fi
echo "install-deps: ok"
