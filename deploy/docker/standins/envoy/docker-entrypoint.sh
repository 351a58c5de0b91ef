#!/bin/sh
# The official Envoy image's entry point, as far as docker-compose.yml relies on it: options
# alone mean `envoy` them, $loglevel adds --log-level, and the command runs as the envoy user
# unless ENVOY_UID=0 (ENVOY_UID / ENVOY_GID renumber that user).
set -e

if [ "${1#-}" != "$1" ]; then
  set -- envoy "$@"
fi
if [ "$1" = envoy ] && [ -n "${loglevel:-}" ]; then
  set -- "$@" --log-level "$loglevel"
fi

if [ "${ENVOY_UID:-}" != 0 ] && [ "$(id -u)" = 0 ]; then
  if [ -n "${ENVOY_UID:-}" ]; then usermod -u "$ENVOY_UID" envoy; fi
  if [ -n "${ENVOY_GID:-}" ]; then groupmod -g "$ENVOY_GID" envoy; fi
  exec setpriv --reuid=envoy --regid=envoy --init-groups "$@"
fi
exec "$@"
