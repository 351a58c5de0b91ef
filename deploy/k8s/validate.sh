#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests; no cluster and no network needed:
#   1. the generated base (deploy/k8s/base) and monitoring files match their generators;
#   2. every overlay builds with kustomize (the one built into kubectl);
#   3. its Kubernetes objects pass `kubernetes-validate --strict` (unknown fields are errors);
#   4. its Istio and KEDA objects pass `check-jsonschema` against deploy/k8s/schemas/.
# kubernetes-validate and check-jsonschema are dev dependencies (.venv/bin); kubectl comes with
# the machine. Exits non-zero at the first failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
bindir=$(dirname "$PYTHON")
export PATH="$bindir:$PATH"
# The oldest Kubernetes the manifests must apply to: native sidecars (Istio's
# nativeSidecar) and the preStop sleep action are on by default from 1.30.
K8S_VERSION=${K8S_VERSION:-1.30}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$PYTHON" -m deploy.k8s.generate --check
"$PYTHON" -m deploy.monitoring.generate --check
for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  echo "== overlay $name"
  "$PYTHON" -m deploy.k8s.render "$overlay" "$out/$name"
  kubernetes-validate --strict --quiet --kubernetes-version "$K8S_VERSION" "$out/$name/core.yaml"
  for schema in deploy/k8s/schemas/*.json; do
    kind=$(basename "$schema" .json)
    if [ -d "$out/$name/$kind" ]; then
      printf "%s: " "$kind"
      check-jsonschema --schemafile "$schema" "$out/$name/$kind"/*.yaml
    fi
  done
done
echo "k8s manifests: ok"
