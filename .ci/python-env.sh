#!/usr/bin/env bash
# Creates (or reuses) the Python venv the conformance tests run in, from conformance/requirements.txt.
# Prints the venv's path on stdout; everything else goes to stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${CONFORMANCE_VENV:-$root/.venv}"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$root/conformance/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/conformance/requirements.txt" >&2
  echo "$want" > "$stamp"
fi
echo "$venv"
