#!/usr/bin/env bash
# Provides envtest assets: a real kube-apiserver 1.20.2 built from Debian's `kubernetes`
# source package, Debian's etcd, and kubectl 1.20 (Debian's kubernetes-client).
# Cached outside the work tree; prints the asset directory (use it as KUBEBUILDER_ASSETS).
# Idempotent: a second run only checks the cache. Needs root the first time (apt).
set -euo pipefail

version=1.20.2
cache=${PETREL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/petrel}
assets=$cache/envtest-$version
log() { echo "envtest-assets: $*" >&2; }

if [[ -x $assets/kube-apiserver && -x $assets/etcd && -x $assets/kubectl ]]; then
  echo "$assets"
  exit 0
fi
mkdir -p "$assets"

need=()
for p in golang-go rsync jq etcd-server dpkg-dev golang-github-modern-go-reflect2-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [[ ! -x $assets/kube-apiserver ]]; then
  # Source packages need a deb-src entry mirroring the binary sources.
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      > /etc/apt/sources.list.d/petrel-deb-src.sources
    apt-get update -qq
  fi
  work=$cache/debian-src
  mkdir -p "$work"
  tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
  if [[ -z $tree ]]; then
    log "fetching Debian's kubernetes source package"
    (cd "$work" && apt-get source -qq kubernetes >/dev/null 2>&1 || apt-get source kubernetes)
    tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
  fi
  [[ -n $tree ]] || { log "no kubernetes source tree under $work"; exit 1; }

  # reflect2 1.0.1 (vendored) crashes under Go >= 1.18 on the first custom-resource create;
  # Debian's 1.0.2 fixes it.
  r2=$tree/vendor/github.com/modern-go/reflect2
  if ! cmp -s /usr/share/gocode/src/github.com/modern-go/reflect2/reflect2.go "$r2/reflect2.go"; then
    log "replacing vendored reflect2 with Debian's 1.0.2"
    find "$r2" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) -delete
    cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$r2/"
    find /usr/share/gocode/src/github.com/modern-go/reflect2/ -maxdepth 1 -name '*.s' -exec cp {} "$r2/" \;
  fi

  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn "$tree" "$tree/.go/src/k8s.io/kubernetes"
  log "building kube-apiserver (about 5 minutes on 2 cores)"
  (cd "$tree/.go/src/k8s.io/kubernetes" && GOPATH=$tree/.go CGO_ENABLED=0 GOFLAGS=-mod=vendor GO111MODULE=off \
     make WHAT=cmd/kube-apiserver >&2)
  bin=$(find "$tree/_output" -type f -name kube-apiserver -perm -u+x | head -n 1)
  [[ -n $bin ]] || { log "kube-apiserver binary not found after build"; exit 1; }
  install -m 0755 "$bin" "$assets/kube-apiserver"
fi

ln -sfn "$(command -v etcd)" "$assets/etcd"
# Debian's kubernetes-client is kubectl 1.20, an exact match for the server. Unpack it into the
# cache rather than installing it: some images ship another package that owns /usr/bin/kubectl.
if [[ ! -x $assets/kubectl ]]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq kubernetes-client >/dev/null && dpkg-deb -x kubernetes-client_*.deb root)
  install -m 0755 "$tmp/root/usr/bin/kubectl" "$assets/kubectl"
  rm -rf "$tmp"
fi
"$assets/kube-apiserver" --version >&2
echo "$assets"
