#!/usr/bin/env bash
# Conformance of the kube emulator with real clients: kubectl (the oldest and newest of the
# machine's versions) and the Python kubernetes client, against the standalone binary over HTTPS.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/conformance/kube"
venv=$(bash "$root/.ci/python-env.sh")
bin="$root/target/debug/kube-emulator"
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build -p kube-emulator --bin kube-emulator --quiet)
fi
tmp=$(mktemp -d)
"$bin" --tls --kubeconfig-out "$tmp/kubeconfig" --bookmark-interval 1 >"$tmp/emulator.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  [ -s "$tmp/kubeconfig" ] && break
  sleep 0.1
done
[ -s "$tmp/kubeconfig" ] || { echo "emulator did not start"; cat "$tmp/emulator.log"; exit 1; }

status=0
for v in 1.27 1.33; do
  kubectl="/usr/lib/google-cloud-sdk/bin/kubectl.$v"
  echo "-- kubectl $v"
  if bash ${KUBE_CONFORMANCE_TRACE:+-x} "$here/kubectl.sh" "$kubectl" "$tmp/kubeconfig" "$root"; then
    echo "-- kubectl $v: ok"
  else
    echo "-- kubectl $v: FAILED"
    status=1
  fi
done
echo "-- python kubernetes client"
if ! KUBECONFIG="$tmp/kubeconfig" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/test_python_client.py"; then
  status=1
fi
if [ $status -ne 0 ]; then
  echo "-- emulator log (tail)"
  tail -n 50 "$tmp/emulator.log"
fi
exit $status
