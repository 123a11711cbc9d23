#!/usr/bin/env bash
# Measures `entra-operator run` as its own process: both emulators as standalone binaries, the
# examples applied with kubectl, then the operator's resident memory and CPU time once the
# BankClients are Ready, and again after N extra AppRegistrations. Used to size the chart's requests.
#
#   cargo build --release --bins && bash scripts/measure-run.sh [target/release] [N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/release}
extra=${2:-200}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

"$bin/kube-emulator" --port 0 --kubeconfig-out "$work/kubeconfig" --crds "$root/crds" >"$work/kube.log" 2>&1 &
pids+=($!)
"$bin/entra-emulator" --port 0 --ca-out "$work/ca.pem" --info-out "$work/info.json" \
  --tenant nordic=5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b --tenant fjord=7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d \
  --tenant kyst=2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f >"$work/entra.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/info.json" ] && [ -s "$work/kubeconfig" ] && break; sleep 0.1; done
field() { python3 -c "import json,sys; print(json.load(open('$work/info.json'))$1)"; }
export KUBECONFIG="$work/kubeconfig"
AZURE_TENANT_ID=$(field "['operator']['tenantId']") \
AZURE_CLIENT_ID=$(field "['operator']['clientId']") \
AZURE_CLIENT_SECRET=$(field "['operator']['clientSecret']") \
AZURE_AUTHORITY_HOST=$(field "['authorityHost']") \
GRAPH_ENDPOINT=$(field "['graphEndpoint']") \
GRAPH_TOKEN_SCOPE=https://graph.microsoft.com/.default \
ENTRA_CA_FILE="$work/ca.pem" \
  "$bin/entra-operator" run --leader-election false --admin-addr 127.0.0.1:0 --log-level warn \
  >"$work/operator.log" 2>&1 &
op=$!
pids+=($op)
rss() { awk '/VmRSS/ {print $2}' "/proc/$op/status"; }
cpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$op/stat"; }
sleep 1
echo "idle:                          RSS $(( $(rss) / 1024 )) MiB, CPU $(cpu) s"
kubectl apply -f "$root/examples/" >/dev/null
kubectl wait --for=condition=Ready bankclients --all --timeout=120s >/dev/null
kubectl wait --for=condition=Ready appregistrations --all --timeout=120s >/dev/null
echo "examples Ready:                RSS $(( $(rss) / 1024 )) MiB, CPU $(cpu) s"
for i in $(seq "$extra"); do
  cat <<YAML
---
apiVersion: entra.bookme.io/v1alpha1
kind: AppRegistration
metadata: {name: load-$i}
spec:
  displayName: Load $i
  credentials: {passwords: [{secretName: load-$i-creds}]}
YAML
done | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready appregistrations --all --timeout=600s >/dev/null
echo "+$extra AppRegistrations Ready: RSS $(( $(rss) / 1024 )) MiB, CPU $(cpu) s"
