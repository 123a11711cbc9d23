#!/usr/bin/env bash
# Runs every conformance suite (conformance/*/run.sh) inside the shared Python venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$(bash "$root/.ci/python-env.sh")
export PATH="$venv/bin:$PATH" CONFORMANCE_VENV="$venv"
cargo build --workspace --bins --locked --quiet
status=0
for suite in "$root"/conformance/*/run.sh; do
  echo "== conformance: $(basename "$(dirname "$suite")")"
  bash "$suite" || status=1
done
exit $status
