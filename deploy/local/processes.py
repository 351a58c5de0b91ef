"""The processes of DESIGN.md §3, as commands. ``make up`` runs exactly these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Program:
    name: str  # "<service>-<kind>", or the system process's own name
    kind: str  # web, worker, relay, beat, gateway, flower
    command: str
    service: str | None = None
    priority: int = 100
    env: Mapping[str, str] = field(default_factory=dict)


def web_command(bindir: str, service: str, bind: str) -> str:
    return (
        f"{bindir}/gunicorn {service}.wsgi --bind {bind} --workers 2 --worker-class gthread "
        f"--threads 4 --preload --max-requests 20000 --max-requests-jitter 2000 "
        f"--graceful-timeout 10 --access-logfile - --forwarded-allow-ips 127.0.0.1 "
        f"--config python:common.gunicorn_conf"
    )


def worker_command(bindir: str, service: str) -> str:
    return (
        f"{bindir}/celery -A {service} worker --queues {service} --hostname {service}@%h "
        f"--concurrency 2 --loglevel INFO --without-gossip --without-mingle --task-events"
    )


def relay_command(bindir: str, service: str) -> str:
    return f"{bindir}/python manage.py relay --settings={service}.settings"


def beat_command(bindir: str, schedule: Path) -> str:
    return f"{bindir}/celery -A orchestrator beat --loglevel INFO --schedule {schedule}"


def programs(
    *,
    python: str,
    services: Sequence[str],
    ports: Mapping[str, int],
    state_dir: Path,
    envoy_config: Path,
    envoy_base_id: int,
) -> list[Program]:
    bindir = str(Path(python).parent)
    progs: list[Program] = []
    for service in services:
        # Every process of a service writes its metrics where that service's /metrics reads them.
        env = {"PROMETHEUS_MULTIPROC_DIR": str(state_dir / "prometheus" / service)}
        bind = f"127.0.0.1:{ports[service]}"
        progs += [
            Program(f"{service}-web", "web", web_command(bindir, service, bind), service, env=env),
            Program(
                f"{service}-worker",
                "worker",
                worker_command(bindir, service),
                service,
                env={**env, "READY_FILE": str(state_dir / "ready" / f"{service}-worker")},
            ),
            Program(
                f"{service}-relay",
                "relay",
                relay_command(bindir, service),
                service,
                env={**env, "READY_FILE": str(state_dir / "ready" / f"{service}-relay")},
            ),
        ]
    progs.append(
        Program(
            "orchestrator-beat",
            "beat",
            beat_command(bindir, state_dir / "celerybeat-schedule"),
            "orchestrator",
            env={"PROMETHEUS_MULTIPROC_DIR": str(state_dir / "prometheus" / "orchestrator")},
        )
    )
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
