#!/bin/sh
# The official redis image's entry point, as far as docker-compose.yml relies on it: options
# alone (or a *.conf first) mean `redis-server` them; redis-server runs as the redis user, owning
# its working directory (/data); any other command runs as it is. The official build also turns
# protected mode off by default (other containers are its clients), which Debian's does not:
# it is given first on the command line here, so a later option still wins.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$1" = redis-server ]; then
  shift
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    config=$1
    shift
    set -- redis-server "$config" --protected-mode no "$@"
  else
    set -- redis-server --protected-mode no "$@"
  fi
fi

if [ "$(umask)" = 0022 ]; then
  umask 0077
fi
exec "$@"
