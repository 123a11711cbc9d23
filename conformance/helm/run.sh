#!/usr/bin/env bash
# Helm chart tests: lint and render charts/entra-operator with the Helm v4 engine (helm-python-sdk),
# validate the manifests against the Kubernetes schemas, compare the CRDs with crds/; static Dockerfile checks.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=$(bash "$root/.ci/python-env.sh")
cd "$root"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/conformance/helm/test_chart.py" "$root/conformance/helm/test_dockerfile.py" "$@"
