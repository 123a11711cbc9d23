#!/usr/bin/env bash
# Entra emulator conformance: starts target/debug/entra-emulator, then drives it with real clients
# (MSAL, azure-identity, PyJWT, the msgraph SDK) under pytest. Exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=$(bash "$root/.ci/python-env.sh")
bin="$root/target/debug/entra-emulator"
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build -p entra-emulator --bin entra-emulator --quiet)
fi
work=$(mktemp -d)
"$bin" --tenant fabrikam --ca-out "$work/ca.pem" --info-out "$work/info.json" \
  >"$work/stdout" 2>"$work/stderr" &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  [ -s "$work/info.json" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "entra-emulator exited early:" >&2
    cat "$work/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
[ -s "$work/info.json" ] || { echo "entra-emulator did not start" >&2; exit 1; }
export ENTRA_EMULATOR_INFO="$work/info.json"
# requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's `verify` (MSAL's), so the
# emulator's CA joins whatever bundle the environment already trusts.
bundle="$work/bundle.pem"
{ cat "${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-/dev/null}}" 2>/dev/null || true; cat "$work/ca.pem"; } >"$bundle"
export REQUESTS_CA_BUNDLE="$bundle" CURL_CA_BUNDLE="$bundle" SSL_CERT_FILE="$bundle"
cd "$root/conformance/entra"
"$venv/bin/python" -m pytest -q -p no:cacheprovider .
