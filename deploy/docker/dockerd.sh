#!/usr/bin/env bash
# Start a Docker engine in the background unless one answers already: for CI (.ci/run) and any
# machine without systemd (a VM or sandbox where `dockerd` is not a service). Idempotent.
#   apt-get install docker.io iptables   (Debian's engine; docker-compose v1 drives it)
#   deploy/docker/dockerd.sh             (log: DOCKERD_LOG, /var/log/cafe-dockerd.log)
#
# What such a machine needs, found on this project's CI VM:
# - iptables: Debian's default nft backend, or the legacy one where nft does not work;
# - the bridges' MTU no larger than the route out (the VM's eth0 has 1400): with Docker's
#   1500, large packets from a build container (TLS to PyPI) are dropped and downloads stall;
# - cgroupfs as the cgroup driver (no systemd), overlay2 on the root filesystem.
set -euo pipefail
log=${DOCKERD_LOG:-/var/log/cafe-dockerd.log}
docker=$(command -v /usr/bin/docker || command -v docker || true)

if [ -n "$docker" ] && "$docker" info >/dev/null 2>&1; then
  echo "dockerd: running"
  exit 0
fi
command -v dockerd >/dev/null || { echo "dockerd: not installed (apt-get install docker.io iptables)" >&2; exit 1; }
[ -n "$docker" ] || { echo "dockerd: no docker client (apt-get install docker.io)" >&2; exit 1; }

if ! iptables -t nat -L -n >/dev/null 2>&1; then
  if iptables-legacy -t nat -L -n >/dev/null 2>&1; then
    echo "dockerd: iptables (nft) does not work here; using iptables-legacy"
    update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
    update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null
  else
    echo "dockerd: no working iptables (nft or legacy)" >&2
    exit 1
  fi
fi

uplink=$(ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1); exit}')
mtu=1500
if [ -n "$uplink" ] && [ -r "/sys/class/net/$uplink/mtu" ]; then
  mtu=$(cat "/sys/class/net/$uplink/mtu")
fi

echo "dockerd: starting (mtu $mtu, log $log)"
mkdir -p "$(dirname "$log")"
setsid dockerd --mtu "$mtu" --storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs \
  >>"$log" 2>&1 </dev/null &
for _ in $(seq 1 120); do
  if "$docker" info >/dev/null 2>&1; then
    echo "dockerd: ready"
    exit 0
  fi
  sleep 0.5
done
echo "dockerd: did not come up; the end of $log:" >&2
tail -n 30 "$log" >&2
exit 1
