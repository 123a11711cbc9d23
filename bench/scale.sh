#!/usr/bin/env bash
# Scale benchmark (issue 14): N BankClients or N AppRegistrations against both emulators as their
# own processes, with Entra's real throttling and a 2 s replication delay, the operator as its own
# release-build process at default settings. Prints time to all Ready and its ratio to the write
# budget floor, Graph writes/reads/token requests per resource, 429s, operator RSS and CPU, and the
# kube emulator's CPU.
#
#   cargo build --release --bins --workspace       # the emulators
#   cargo build --profile image --no-default-features --bin entra-operator   # the operator as shipped
#   nice bash bench/scale.sh bankclients 1000      # or: appregistrations 1000, rotation 1000
#
# `rotation` is a rotation wave: N AppRegistrations with a client secret (overlap 5 s) are created
# and left to become Ready (not timed); then all N are marked due at once (the
# `entra.bookme.io/rotate` annotation, one `kubectl annotate` of all of them) and the time runs
# until every one has a new secret and its previous one removed: 2 writes each (addPassword,
# removePassword).
#
# Environment: BIN (the emulators' directory, default target/release), OPERATOR_BIN (default
# target/image/entra-operator: the binary the Dockerfile ships, without the sandbox's emulators
# linked in, whose resident size is part of the RSS measured), THROTTLING (real), REPLICATION_DELAY_MS (2000),
# LIMIT_FACTOR (with THROTTLING=scaled: every Graph budget times this, windows unchanged; the
# operator's GRAPH_WRITE_BUDGET, GRAPH_READ_BUDGET and the floor are scaled with it, so a 10,000 run takes a fraction
# of the time at the same ratio to its floor),
# OPERATOR_ARGS (extra flags for `entra-operator run`, none by default), OPERATOR_WRAPPER (a command
# the operator runs under, e.g. `heaptrack -o /tmp/op` for a heap profile), TIMEOUT (seconds, 3600),
# REQUESTS_OUT (a file to keep the emulator's request log of the run in), RESYNC=1 (afterwards,
# restart the operator, so every resource is reconciled again with nothing changed, and count the
# Graph requests that costs per resource until Graph sees none for 10 s), PERIODIC=S (the operator
# resyncs every S seconds; once all are Ready, wait two periods (the first resync after a change is
# a full one), then count the Graph requests of the next two periods per resource and resync: the
# steady cost of resyncing unchanged resources, quiet resyncs included; the drift wake-ups, which
# should be none (nothing changes behind the operator's back); and the operator's RSS after the
# resyncs). The operator's reconciles per
# resource by kind (any result) are printed for the timed phase.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:-bankclients}
n=${2:-1000}
bin=${BIN:-$root/target/release}
operator_bin=${OPERATOR_BIN:-$root/target/image/entra-operator}
if [ ! -x "$operator_bin" ]; then
  echo "no operator binary at $operator_bin: cargo build --profile image --no-default-features --bin entra-operator" >&2
  exit 2
fi
throttling=${THROTTLING:-real}
factor=${LIMIT_FACTOR:-1}
throttle_args=()
operator_env=()
if [ -n "${PERIODIC:-}" ]; then
  operator_env+=(RESYNC_PERIOD="${PERIODIC}s")
fi
if [ "$throttling" = scaled ]; then
  throttle_args=(--throttle-limit-factor "$factor" --throttle-window-factor 1)
  operator_env+=(GRAPH_WRITE_BUDGET=$(python3 -c "print(int(2850*$factor))")
    GRAPH_READ_BUDGET=$(python3 -c "print(int(2800*$factor))"))
fi
delay=${REPLICATION_DELAY_MS:-2000}
timeout=${TIMEOUT:-3600}
work=$(mktemp -d)
pids=()
# A wrapper (OPERATOR_WRAPPER) may run the operator as its child: stop the children too.
cleanup() { for p in "${pids[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

"$bin/kube-emulator" --port 0 --kubeconfig-out "$work/kubeconfig" --crds "$root/crds" >"$work/kube.log" 2>&1 &
kube=$!
pids+=($kube)
"$bin/entra-emulator" --port 0 --ca-out "$work/ca.pem" --info-out "$work/info.json" \
  --throttling "$throttling" "${throttle_args[@]}" --replication-delay-ms "$delay" \
  --tenant nordic=5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b --tenant fjord=7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d \
  --tenant kyst=2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f >"$work/entra.log" 2>&1 &
entra=$!
pids+=($entra)
for _ in $(seq 100); do [ -s "$work/info.json" ] && [ -s "$work/kubeconfig" ] && break; sleep 0.1; done
field() { python3 -c "import json,sys; print(json.load(open('$work/info.json'))$1)"; }
control=$(python3 -c "
import json; i = json.load(open('$work/info.json'))
print(i['controlApi'])")
export KUBECONFIG="$work/kubeconfig"
admin_port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
start_operator() {
  # shellcheck disable=SC2086
  AZURE_TENANT_ID=$(field "['operator']['tenantId']") \
  AZURE_CLIENT_ID=$(field "['operator']['clientId']") \
  AZURE_CLIENT_SECRET=$(field "['operator']['clientSecret']") \
  AZURE_AUTHORITY_HOST=$(field "['authorityHost']") \
  GRAPH_ENDPOINT=$(field "['graphEndpoint']") \
  GRAPH_TOKEN_SCOPE=https://graph.microsoft.com/.default \
  ENTRA_CA_FILE="$work/ca.pem" \
    env "${operator_env[@]}" ${OPERATOR_WRAPPER:-} "$operator_bin" run --leader-election false --admin-addr 127.0.0.1:$admin_port --log-level warn ${OPERATOR_ARGS:-} \
    >>"$work/operator.log" 2>&1 &
  op=$!
  pids+=($op)
}
start_operator
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
rss_mib() { awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$1/status"; }
# Resident memory by kind: anonymous (the heap, stacks) and file-backed (the binary's pages).
rss_parts() { awk '/RssAnon|RssFile/ {printf "%s %d MiB ", $1, $2/1024}' "/proc/$1/status"; }
requests() { curl -sk "$control/requests${1:+?since=$1}"; }
# Reconciles so far by kind (every result), as "Kind=count ..." from the operator's metrics.
reconciles() { curl -s "http://127.0.0.1:$admin_port/metrics" | awk -F'[{}"]' '/^entra_operator_reconciles_total/ {n[$3]+=$NF} END {for (k in n) printf "%s=%d ", k, n[k]}'; }

# Examples first (the API app the BankClients reference), as a new user would.
kubectl apply -f "$root/examples/" >/dev/null
kubectl wait --for=condition=Ready appregistrations --all --timeout=300s >/dev/null
kubectl wait --for=condition=Ready bankclients --all --timeout=300s >/dev/null
requests >"$work/requests0.json"
since=$(python3 -c "import json,sys; r=json.load(open('$work/requests0.json'))['requests']; print(max([x['seq'] for x in r], default=0))")
op0=$(ticks $op); kube0=$(ticks $kube); entra0=$(ticks $entra); rec0=$(reconciles)

case "$kind" in
  bankclients) resource=bankclients ;;
  appregistrations|rotation) resource=appregistrations ;;
  *) echo "kind: bankclients, appregistrations or rotation" >&2; exit 2 ;;
esac
python3 - "$kind" "$n" >"$work/load.yaml" <<'PY'
import sys
kind, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    if kind == "bankclients":
        print(f"""---
apiVersion: entra.bookme.io/v1alpha1
kind: BankClient
metadata: {{name: bench-{i}}}
spec:
  bankId: bench-{i}
  api: {{appRef: {{name: api-system-integration}}, role: System}}
  secret: {{name: bench-{i}-credentials}}""")
    elif kind == "rotation":
        print(f"""---
apiVersion: entra.bookme.io/v1alpha1
kind: AppRegistration
metadata: {{name: bench-{i}, labels: {{bench: rotation}}}}
spec:
  displayName: Bench {i}
  credentials: {{passwords: [{{secretName: bench-{i}-creds, overlap: 5s}}]}}""")
    else:
        print(f"""---
apiVersion: entra.bookme.io/v1alpha1
kind: AppRegistration
metadata: {{name: bench-{i}}}
spec:
  displayName: Bench {i}
  credentials: {{passwords: [{{secretName: bench-{i}-creds}}]}}""")
PY
# How many bench resources are done: Ready, or (rotation) rotated for the wave with nothing left
# in overlap.
count_done() {
  kubectl get "$resource" -o json | python3 -c "
import json,sys
wave=sys.argv[1]
items=[i for i in json.load(sys.stdin)['items'] if i['metadata']['name'].startswith('bench-')]
def ready(i): return any(c['type']=='Ready' and c['status']=='True' for c in (i.get('status') or {}).get('conditions',[]))
def rotated(i):
    creds=(i.get('status') or {}).get('credentials') or []
    return bool(creds) and all(c.get('rotateToken')==wave and not c.get('previous') and not c.get('pending') for c in creds)
print(sum(1 for i in items if (rotated(i) if wave else ready(i))))" "${1:-}"
}
if [ "$kind" = rotation ]; then
  # Not timed: the N AppRegistrations and their first secret.
  kubectl create -f "$work/load.yaml" >/dev/null
  until [ "$(count_done)" -ge "$n" ]; do sleep 2; done
  requests >"$work/requests0.json"
  since=$(python3 -c "import json,sys; r=json.load(open('$work/requests0.json'))['requests']; print(max([x['seq'] for x in r], default=0))")
  op0=$(ticks $op); kube0=$(ticks $kube); entra0=$(ticks $entra); rec0=$(reconciles)
  wave=wave-1
  start=$(date +%s.%N)
  kubectl annotate appregistrations -l bench=rotation "entra.bookme.io/rotate=$wave" --overwrite >/dev/null
  created=$(date +%s.%N)
else
  wave=
  start=$(date +%s.%N)
  kubectl create -f "$work/load.yaml" >/dev/null
  created=$(date +%s.%N)
fi
peak=0
while :; do
  ready=$(count_done "$wave")
  r=$(rss_mib $op); [ "$r" -gt "$peak" ] && peak=$r
  now=$(date +%s.%N)
  elapsed=$(python3 -c "print(round($now-$start,1))")
  echo "t=${elapsed}s ready=$ready/$n rss=${r}MiB" >&2
  [ "$ready" -ge "$n" ] && break
  if python3 -c "import sys; sys.exit(0 if $now-$start > $timeout else 1)"; then echo "timeout" >&2; break; fi
  # Listing every resource costs the API server too: look less often at large N.
  sleep $(( n > 2000 ? n / 1000 : 2 ))
done
end=$(date +%s.%N)
parts=$(rss_parts $op)
op1=$(ticks $op); kube1=$(ticks $kube); entra1=$(ticks $entra); rec1=$(reconciles)
# Time requests spent waiting for the operator's own Graph budget (client-side pacing).
budget_wait=$(curl -s "http://127.0.0.1:$admin_port/metrics" | awk '/^entra_operator_graph_budget_wait_seconds_total/ {print $2}')
requests "$since" >"$work/requests.json"
[ -n "${REQUESTS_OUT:-}" ] && cp "$work/requests.json" "$REQUESTS_OUT"
python3 - "$work/requests0.json" "$work/requests.json" "$n" "$start" "$created" "$end" "$ready" \
  "$(( op1 - op0 ))" "$(( kube1 - kube0 ))" "$(( entra1 - entra0 ))" "$hz" "$peak" "$(rss_mib $op)" "$kind" \
  "$throttling" "$factor" "${budget_wait:-0}" "$parts" "$rec0" "$rec1" <<'PY'
import json, sys
path0, path, n, start, created, end, ready, op_t, kube_t, entra_t, hz, peak, rss, kind, throttling, factor, budget_wait, parts, rec0, rec1 = sys.argv[1:]
n, ready = int(n), int(ready)
start, created, end = float(start), float(created), float(end)
hz = float(hz)
# Per method and path template, cumulative (inner requests of a $batch counted as themselves).
before = json.load(open(path0))["counts"]
after = json.load(open(path))
writes = reads = tokens = 0
by_template = {}
for key, count in after["counts"].items():
    count -= before.get(key, 0)
    method, template = key.split(" ", 1)
    if template.endswith("$batch") or count <= 0:
        continue
    by_template[key] = count
    if template.endswith("/oauth2/v2.0/token"):
        tokens += count
    elif method == "GET":
        reads += count
    else:
        writes += count
# 429s from the log of single requests (it keeps the last 50,000).
throttled = sum(1 for r in after["requests"] if r.get("status") == 429)
elapsed = end - start
# Writes a new resource needs at least, at 3,000 writes per 150 s per app per tenant: a BankClient
# 4 (application, service principal, app role assignment, addPassword); the bench's AppRegistration
# 3 (it asks for no permission, so no assignment); a rotation 2 (addPassword, removePassword).
factor = float(factor) if throttling == "scaled" else 1.0
floor = {"bankclients": 4, "appregistrations": 3, "rotation": 2}[kind] * n / (20.0 * factor)
print(f"kind={kind} n={n} ready={ready}")
what = "rotated" if kind == "rotation" else "Ready"
print(f"time to all {what}: {elapsed:.1f} s (kubectl create/annotate took {created-start:.1f} s)")
print(f"write-budget floor: {floor:.1f} s ({int(round(floor*20*factor/n))} writes each at {20*factor:g}/s); ratio {elapsed/floor:.2f}x")
print(f"Graph per resource: writes {writes/n:.2f}, reads {reads/n:.2f}, token requests {tokens/n:.3f} (total {writes}/{reads}/{tokens})")
print(f"429 responses: {throttled}; requests waited {float(budget_wait or 0):.0f} s in all for the operator's own budget")
for key, count in sorted(by_template.items(), key=lambda kv: -kv[1]):
    print(f"  {count/n:6.2f} per resource  {key}")
print(f"operator: RSS {rss} MiB at the end ({parts.strip()}), peak {peak} MiB sampled; CPU {int(op_t)/hz:.1f} s ({int(op_t)/hz/elapsed*100:.0f}% of one core)")
def counts(text):
    return {k: int(v) for k, v in (x.split("=") for x in text.split())}
r0, r1 = counts(rec0), counts(rec1)
print("reconciles per resource (any result): " + ", ".join(
    f"{k} {(r1[k] - r0.get(k, 0)) / n:.2f}" for k in sorted(r1) if r1[k] > r0.get(k, 0)))
print(f"kube emulator CPU {int(kube_t)/hz:.1f} s ({int(kube_t)/hz/elapsed*100:.0f}%); entra emulator CPU {int(entra_t)/hz:.1f} s ({int(entra_t)/hz/elapsed*100:.0f}%)")
PY

if [ "${RESYNC:-0}" = 1 ] && [ "$ready" -ge "$n" ]; then
  count_requests() { curl -sk "$control/requests" | python3 -c "
import json,sys; c=json.load(sys.stdin)['counts']
w=sum(v for k,v in c.items() if not k.startswith('GET') and not k.endswith('token') and not k.endswith('\$batch'))
r=sum(v for k,v in c.items() if k.startswith('GET'))
print(w, r)"; }
  read -r w0 r0 < <(count_requests)
  kill "$op"; wait "$op" 2>/dev/null || true
  rstart=$(date +%s.%N)
  start_operator
  last=; quiet=0
  while [ "$quiet" -lt 2 ]; do
    sleep 5
    now_counts=$(count_requests)
    if [ "$now_counts" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; last=$now_counts; fi
  done
  read -r w1 r1 <<<"$last"
  python3 -c "
n=$n; w=$w1-$w0; r=$r1-$r0
print(f'resync after a restart, nothing changed: {w} writes, {r} reads ({r/n:.2f} per resource), settled within {$(date +%s.%N)-$rstart-10:.0f} s')"
fi

if [ -n "${PERIODIC:-}" ] && [ "$ready" -ge "$n" ]; then
  counts() { curl -sk "$control/requests" | python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)['counts']))"; }
  quiet_total() { curl -s "http://127.0.0.1:$admin_port/metrics" | awk '/^entra_operator_(quiet_resyncs|drift_wakeups)_total/ {s[$1 ~ /drift/]+=$NF} END {print s[0]+0, s[1]+0}'; }
  sleep $(( 2 * PERIODIC ))
  read -r q0 w0 < <(quiet_total); c0=$(counts)
  sleep $(( 2 * PERIODIC ))
  read -r q1 w1 < <(quiet_total); c1=$(counts)
  echo "operator RSS after the four periods of resyncs: $(rss_mib $op) MiB"
  python3 - "$c0" "$c1" "$n" "$q0" "$q1" "$PERIODIC" "$w0" "$w1" <<'PY'
import json, sys
c0, c1 = json.loads(sys.argv[1]), json.loads(sys.argv[2])
n, q0, q1, period = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
woken = float(sys.argv[8]) - float(sys.argv[7])
writes = reads = delta = 0
by = {}
for key, v in c1.items():
    v -= c0.get(key, 0)
    method, template = key.split(" ", 1)
    if v <= 0 or template.endswith("$batch") or template.endswith("/token"):
        continue
    by[key] = v
    if method != "GET":
        writes += v
    elif template.endswith("/delta"):
        delta += v
    else:
        reads += v
# Two periods: every resource (and its child, for a BankClient) resyncs twice.
resyncs = 2 * n
print(f"periodic resync every {period} s, nothing changed, two periods: {writes} writes, {reads} reads "
      f"({reads/resyncs:.2f} per resource and resync), {delta} delta pages; quiet resyncs {q1-q0:.0f}, "
      f"drift wake-ups {woken:.0f}")
for key, v in sorted(by.items(), key=lambda kv: -kv[1]):
    print(f"  {v/resyncs:6.2f} per resource and resync  {key}")
PY
fi
