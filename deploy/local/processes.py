"""The processes of DESIGN.md §3, as commands. ``make up`` runs exactly these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Program:
    name: str  # "<service>-<kind>", or the system process's own name
    kind: str  # web, worker, relay, beat, gateway, flower
    command: str
    priority: int = 100
    stop_signal: str = "TERM"


def web_command(python: str, service: str, bind: str) -> str:
    bindir = str(Path(python).parent)
    return (
        f"{bindir}/gunicorn {service}.wsgi --bind {bind} --workers 2 --worker-class gthread "
        f"--threads 4 --preload --max-requests 20000 --max-requests-jitter 2000 --graceful-timeout 10 "
        f"--access-logfile - --forwarded-allow-ips 127.0.0.1"
    )


def worker_command(python: str, service: str) -> str:
    bindir = str(Path(python).parent)
    return (
        f"{bindir}/celery -A {service} worker --queues {service} --hostname {service}@%h "
        f"--concurrency 2 --loglevel INFO --without-gossip --without-mingle"
    )


def programs(
    *,
    python: str,
    services: Sequence[str],
    ports: Mapping[str, int],
    envoy_config: Path,
    envoy_base_id: int,
) -> list[Program]:
    bindir = str(Path(python).parent)
    progs: list[Program] = []
    for service in services:
        progs.append(
            Program(
                f"{service}-web", "web", web_command(python, service, f"127.0.0.1:{ports[service]}")
            )
        )
        progs.append(Program(f"{service}-worker", "worker", worker_command(python, service)))
    progs.append(
        Program(
            "gateway",
            "gateway",
            f"{bindir}/envoy -c {envoy_config} --base-id {envoy_base_id} --log-level warn "
            f"--drain-time-s 1 --parent-shutdown-time-s 2",
            priority=200,
        )
    )
    return progs
