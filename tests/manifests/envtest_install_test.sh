#!/usr/bin/env bash
# envtest: the install artefacts against a real kube-apiserver 1.20.2 + etcd, with the real
# kubectl 1.20. Checks that the CRDs are accepted and enforce their schema with the server's
# own messages, that `kubectl explain`, `kubectl scale` and the printer columns work, that
# manifests/ installs and its ClusterRole grants what the controller needs (and not more),
# and that the Helm chart renders to objects the server accepts.
set -euo pipefail

src=${PETREL_SOURCE_DIR:?PETREL_SOURCE_DIR is not set}
assets=$(bash "$src/scripts/envtest-assets.sh")
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
mkdir -p "$work/certs"
openssl genrsa -out "$work/certs/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/certs/sa.key" -pubout -out "$work/certs/sa.pub" 2>/dev/null
admin=$(openssl rand -hex 16)
echo "$admin,admin,admin,system:masters" >"$work/tokens.csv"

"$assets/etcd" --data-dir="$work/etcd" --listen-client-urls="http://127.0.0.1:$etcd_port" \
  --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
pids+=($!)
"$assets/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" --cert-dir="$work/certs" \
  --secure-port="$api_port" --insecure-port=0 --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 --service-cluster-ip-range=10.0.0.0/24 \
  --allow-privileged=true --authorization-mode=RBAC --token-auth-file="$work/tokens.csv" \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$work/certs/sa.pub" \
  --service-account-signing-key-file="$work/certs/sa.key" \
  --disable-admission-plugins=ServiceAccount >"$work/apiserver.log" 2>&1 &
pids+=($!)

kc() { "$assets/kubectl" --server="https://127.0.0.1:$api_port" --token="$admin" \
  --insecure-skip-tls-verify --request-timeout=20s "$@"; }
for _ in $(seq 1 90); do
  kc get --raw /readyz >/dev/null 2>&1 && break
  sleep 1
done
kc get --raw /readyz >/dev/null || { tail -20 "$work/apiserver.log"; fail "apiserver did not start"; }

echo "--- CRDs apply and become established"
kc apply -f "$src/crds/" >/dev/null
kc wait --for condition=established --timeout=60s crd/postgresclusters.petrel.dev >/dev/null

echo "--- invalid clusters are refused with the server's message"
reject() {  # reject NAME EXPECTED-SUBSTRING SPEC-YAML
  local out
  if out=$(printf 'apiVersion: petrel.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: %s}\nspec:\n%s\n' \
             "$1" "$3" | kc apply --validate=false -f - 2>&1); then
    fail "$1 was accepted: $out"
  fi
  [[ $out == *"$2"* ]] || fail "$1: expected '$2' in: $out"
}
valid='  image: ghcr.io/petrel-dev/postgres:15.4'
reject negative-replicas 'spec.replicas in body should be greater than or equal to 1' \
  "$valid"$'\n  replicas: -1\n  storage: {size: 1Gi}'
reject bad-enum 'Unsupported value: "Keep"' "$valid"$'\n  storage: {size: 1Gi, reclaimPolicy: Keep}'
reject bad-size 'spec.storage.size in body should match' "$valid"$'\n  storage: {size: ten-gigs}'
reject no-storage 'spec.storage: Required value' "$valid"
reject bad-sync 'Unsupported value: "all"' \
  "$valid"$'\n  storage: {size: 1Gi}\n  postgresql: {synchronous: {method: all}}'

echo "--- kubectl explain shows the descriptions"
explained=""
for _ in $(seq 1 30); do
  explained=$(kc explain pgc.spec.storage 2>/dev/null || true)
  [[ $explained == *"Volume size per instance"* ]] && break
  sleep 1
done
[[ $explained == *"Volume size per instance"* ]] || fail "explain: $explained"

echo "--- examples apply; defaults land; kubectl scale changes spec.replicas"
kc apply -f "$src/examples/dev-single.yaml" -f "$src/examples/production-ha.yaml" >/dev/null
[[ $(kc get pgc dev -o jsonpath='{.spec.switchoverDelay}') == 60 ]] || fail "default switchoverDelay"
kc scale pgc prod --replicas=5 >/dev/null
[[ $(kc get pgc prod -o jsonpath='{.spec.replicas}') == 5 ]] || fail "scale did not set spec.replicas"
[[ $(kc get --raw /apis/petrel.dev/v1alpha1/namespaces/default/postgresclusters/prod/scale) == *'"replicas":5'* ]] \
  || fail "scale subresource"
table=$(kc get pgc)  # no pipe into head: under pipefail, kubectl's SIGPIPE would fail the test
header=${table%%$'\n'*}
for col in NAME REPLICAS READY PRIMARY VERSION STATUS AGE; do
  [[ $header == *"$col"* ]] || fail "printer column $col missing: $header"
done

echo "--- manifests/ install; the ClusterRole grants exactly what the controller uses"
kc apply -f "$src/manifests/" >/dev/null
sa=system:serviceaccount:petrel-system:petrel
can() { kc auth can-i "$@" --as="$sa" 2>/dev/null || true; }
for allowed in "create pods -n apps" "delete pods -n apps" "patch services -n apps" \
               "create persistentvolumeclaims -n apps" "patch persistentvolumeclaims -n apps" \
               "create secrets -n apps" "update secrets -n apps" "watch postgresclusters.petrel.dev" \
               "update postgresclusters.petrel.dev --subresource=status -n apps" \
               "create poddisruptionbudgets.policy -n apps" "list namespaces" \
               "create events.events.k8s.io -n apps" "update leases.coordination.k8s.io -n petrel-system"; do
  # shellcheck disable=SC2086
  [[ $(can $allowed) == yes ]] || fail "the controller cannot: $allowed"
done
for denied in "update postgresclusters.petrel.dev -n apps" "delete postgresclusters.petrel.dev -n apps" \
              "update pods -n apps" "create namespaces" "delete nodes" "create clusterroles"; do
  # shellcheck disable=SC2086
  [[ $(can $denied) == no ]] || fail "the controller should not be allowed to: $denied"
done

echo "--- the chart renders and the server accepts it; it matches manifests/ and crds/"
export GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$work/gocache"
(cd "$src/tests/manifests/helmrender" && go build -o "$work/helmrender" .)
"$work/helmrender" "$src/charts/petrel" petrel petrel-system >"$work/chart.yaml"
kc apply --dry-run=server -f "$work/chart.yaml" >/dev/null
printf 'metrics:\n  grafanaDashboard: {enabled: true}\n' >"$work/dashboard-values.yaml"
"$work/helmrender" "$src/charts/petrel" petrel petrel-system "$work/dashboard-values.yaml" \
  >"$work/chart-dashboard.yaml"
kc apply --dry-run=server -f "$work/chart-dashboard.yaml" >/dev/null
grep -q '"uid": "petrel-postgres"' "$work/chart-dashboard.yaml" || fail "no Grafana dashboard in the chart"
printf 'replicas: 3\nleaderElection: {enabled: false}\n' >"$work/bad-values.yaml"
if "$work/helmrender" "$src/charts/petrel" petrel petrel-system "$work/bad-values.yaml" >/dev/null 2>"$work/err"; then
  fail "chart accepted replicas > 1 without leader election"
fi
grep -q "needs leaderElection.enabled" "$work/err" || fail "chart error: $(cat "$work/err")"
python3 - "$src" <<'PY'
import sys, yaml, os
src = sys.argv[1]
rbac = list(yaml.safe_load_all(open(f"{src}/manifests/10-rbac.yaml")))
rules = [d for d in rbac if d["kind"] == "ClusterRole"][0]["rules"]
chart_rules = yaml.safe_load(open(f"{src}/charts/petrel/files/rules.yaml"))
assert rules == chart_rules, "charts/petrel/files/rules.yaml differs from manifests/10-rbac.yaml"
for name in os.listdir(f"{src}/charts/petrel/crds"):
    a = open(f"{src}/charts/petrel/crds/{name}").read()
    b = open(f"{src}/crds/{name}").read()
    assert a == b, f"charts/petrel/crds/{name} differs from crds/{name}; copy it"
PY
echo "PASS"
