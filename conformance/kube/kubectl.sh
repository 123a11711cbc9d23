#!/usr/bin/env bash
# kubectl against the kube emulator: apply the project's CRDs and examples (client-side and
# server-side), printer columns, a condition set by the test and waited for, get -w, describe,
# annotate/label/patch, deletion through a finalizer, and a readable error for an invalid CR.
# Usage: kubectl.sh <kubectl binary> <kubeconfig> <repository root>
set -euo pipefail
k="$1"
export KUBECONFIG="$2"
root="$3"
ns="conformance-$(basename "$k" | tr -c 'a-z0-9\n' '-')"
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() { # expect <description> <needle> <haystack>
  case "$3" in *"$2"*) ;; *) fail "$1: expected '$2' in: $3" ;; esac
}

"$k" version >/dev/null
"$k" apply -f "$root/crds/" >/dev/null
"$k" wait --for=condition=Established crd --all --timeout=10s >/dev/null
# The first things a new user types: kubectl 1.32+ sends these bodies as protobuf.
"$k" create namespace "$ns" >/dev/null
"$k" create -n "$ns" secret generic conformance --from-literal=password=hunter2 >/dev/null
"$k" create -n "$ns" configmap conformance --from-literal=colour=blue >/dev/null
"$k" create -n "$ns" serviceaccount conformance >/dev/null
token=$("$k" create -n "$ns" token conformance)
[ -n "$token" ] || fail "kubectl create token printed nothing"
got=$("$k" get -n "$ns" secret conformance -o jsonpath='{.data.password}' | base64 -d)
[ "$got" = "hunter2" ] || fail "kubectl create secret generic stored '$got'"
got=$("$k" get -n "$ns" configmap conformance -o jsonpath='{.data.colour}')
[ "$got" = "blue" ] || fail "kubectl create configmap stored '$got'"
out=$("$k" api-resources --api-group=entra.bookme.io)
expect "api-resources" "bankclients" "$out"

# Apply the examples, client-side then server-side.
"$k" apply -n "$ns" -f "$root/examples/" >/dev/null
out=$("$k" apply -n "$ns" -f "$root/examples/")
expect "re-apply is a no-op" "unchanged" "$out"
out=$("$k" apply -n "$ns" --server-side --force-conflicts -f "$root/examples/")
expect "server-side apply" "serverside-applied" "$out"
count=$(find "$root/examples" -name '*.yaml' -exec grep -h '^kind:' {} + | wc -l)
got=$("$k" get -n "$ns" appregistrations,bankclients,tenantmappings,naaintegrations,entrapolicies -o name | wc -l)
[ "$got" -eq "$count" ] || fail "expected $count resources from examples, got $got"

# Printer columns.
kind=$("$k" get -n "$ns" bankclients -o jsonpath='{.items[0].kind}')
name=$("$k" get -n "$ns" bankclients -o jsonpath='{.items[0].metadata.name}')
[ "$kind" = "BankClient" ] || fail "kind: $kind"
header=$("$k" get -n "$ns" bankclients); header=${header%%$'\n'*}
expect "printer columns" "BANK" "$header"
expect "printer columns" "READY" "$header"
expect "printer columns" "AGE" "$header"
wide=$("$k" get -n "$ns" bankclients -o wide); wide=${wide%%$'\n'*}
expect "priority-1 columns in -o wide" "REASON" "$wide"

# A watch sees the change the test makes.
"$k" get -n "$ns" bankclient "$name" -w --output-watch-events >"$KUBECONFIG.watch.$$" 2>&1 &
watcher=$!
sleep 1

# A condition set by the test, and waited for.
"$k" patch -n "$ns" bankclient "$name" --subresource=status --type=merge -p \
  '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Conformance","message":"set by the test","lastTransitionTime":"2024-01-01T00:00:00Z"}]}}' >/dev/null
"$k" wait -n "$ns" --for=condition=Ready "bankclient/$name" --timeout=10s >/dev/null
row=$("$k" get -n "$ns" bankclient "$name" --no-headers)
expect "Ready column" "True" "$row"
sleep 1
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
watched=$(cat "$KUBECONFIG.watch.$$"); rm -f "$KUBECONFIG.watch.$$"
expect "get -w" "MODIFIED" "$watched"

# describe, annotate, label, patch.
# An event written the way the operator writes it (events.k8s.io/v1, as kube-rs' Recorder does)
# is listed by describe, which reads core v1 events by involvedObject.
uid=$("$k" get -n "$ns" bankclient "$name" -o jsonpath='{.metadata.uid}')
cat <<YAML | "$k" create -n "$ns" -f - >/dev/null
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: conformance-event}
eventTime: "2024-01-01T00:00:00.000000Z"
reportingController: entra-operator
reportingInstance: conformance
action: Reconciling
reason: ConformanceEvent
type: Normal
note: written through events.k8s.io
regarding: {apiVersion: entra.bookme.io/v1alpha1, kind: BankClient, name: "$name", namespace: "$ns", uid: "$uid"}
YAML
out=$("$k" describe -n "$ns" bankclient "$name")
expect "describe" "Bank Id:" "$out"
expect "describe lists events.k8s.io events" "written through events.k8s.io" "$out"
"$k" annotate -n "$ns" bankclient "$name" conformance/checked=yes >/dev/null
"$k" label -n "$ns" bankclient "$name" tier=gold >/dev/null
out=$("$k" get -n "$ns" bankclients -l tier=gold -o name)
expect "label selector" "bankclient.entra.bookme.io/$name" "$out"
"$k" patch -n "$ns" bankclient "$name" --type=merge -p '{"spec":{"displayName":"Patched by conformance"}}' >/dev/null
out=$("$k" get -n "$ns" bankclient "$name" -o jsonpath='{.spec.displayName} {.metadata.generation} {.metadata.annotations.conformance/checked}')
expect "patch bumps generation" "Patched by conformance 2 yes" "$out"

# Deletion through a finalizer.
"$k" patch -n "$ns" bankclient "$name" --type=merge -p '{"metadata":{"finalizers":["conformance.bookme.io/hold"]}}' >/dev/null
"$k" delete -n "$ns" bankclient "$name" --wait=false >/dev/null
ts=$("$k" get -n "$ns" bankclient "$name" -o jsonpath='{.metadata.deletionTimestamp}')
[ -n "$ts" ] || fail "deletionTimestamp not set while a finalizer is pending"
"$k" patch -n "$ns" bankclient "$name" --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]' >/dev/null
if "$k" get -n "$ns" bankclient "$name" >/dev/null 2>&1; then fail "deleted after the finalizer was removed"; fi

# A readable error for an invalid CR.
bad=$(cat <<YAML
apiVersion: entra.bookme.io/v1alpha1
kind: BankClient
metadata:
  name: invalid-bank
spec:
  bankId: "Not Valid"
  api:
    appRef:
      name: api
  secret:
    name: s
YAML
)
if out=$(echo "$bad" | "$k" apply -n "$ns" -f - 2>&1); then fail "invalid CR accepted: $out"; fi
expect "invalid CR error" 'BankClient "invalid-bank" is invalid: spec.bankId: Invalid value: "Not Valid"' "$out"
expect "invalid CR error" "should match" "$out"

# Delete everything the examples created, and the namespace.
"$k" delete -n "$ns" -f "$root/examples/" --ignore-not-found --wait=true --timeout=20s >/dev/null
"$k" delete namespace "$ns" --timeout=20s >/dev/null
if "$k" get namespace "$ns" >/dev/null 2>&1; then fail "namespace still present"; fi
