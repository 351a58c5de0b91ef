"""The processes of DESIGN.md §3, as commands. ``make up`` runs exactly these."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Debian's package; not on a non-root user's PATH.
NGINX = "/usr/sbin/nginx"
GATEWAYS = ("envoy", "nginx")


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


def log_level() -> str:
    # Celery's --loglevel overrides the Django logging settings for its own loggers.
    return os.environ.get("LOG_LEVEL", "INFO").upper()


def worker_command(bindir: str, service: str) -> str:
    return (
        f"{bindir}/celery -A {service} worker --queues {service} --hostname {service}@%h "
        f"--loglevel {log_level()} --without-gossip --without-mingle --task-events"
    )


def relay_command(bindir: str, service: str) -> str:
    return f"{bindir}/python manage.py relay --settings={service}.settings"


def beat_command(bindir: str, schedule: Path) -> str:
    return f"{bindir}/celery -A orchestrator beat --loglevel {log_level()} --schedule {schedule}"


def envoy_command(bindir: str, config: Path, base_id: int) -> str:
    return (
        f"{bindir}/envoy -c {config} --base-id {base_id} --log-level warn "
        f"--drain-time-s 1 --parent-shutdown-time-s 2"
    )


def nginx_command(config: Path) -> str:
    # In the foreground under supervisord; -e: no attempt to open the packaged /var/log path.
    return f"{NGINX} -e stderr -c {config} -g 'daemon off;'"


# Flower's own Celery app: no Django, and nothing it needs beyond the read-mostly Redis user.
FLOWER_APP = "common.messaging.flower"


def flower_command(bindir: str, port: int, *, app: str = "orchestrator") -> str:
    # One Celery app sees every service's workers: they share the broker and send task events.
    return f"{bindir}/celery -A {app} flower --address=127.0.0.1 --port={port} --url_prefix=flower"


def programs(
    *,
    python: str,
    services: Sequence[str],
    ports: Mapping[str, int],
    state_dir: Path,
    gateway: str,
    gateway_config: Path,
    envoy_base_id: int,
    flower_port: int,
    flower_auth: str,
    web_env: Mapping[str, Mapping[str, str]] | None = None,
    redis_urls: Mapping[str, str] | None = None,
) -> list[Program]:
    """Every process of the local stack. ``gateway`` is "envoy" or "nginx"; ``flower_auth`` is
    "user:password", given to Flower in its environment rather than on its command line;
    ``web_env`` is what only one service's web process gets (the customer service's token
    signing keys); ``redis_urls``, if given, is each Redis user's URL: every process of a
    service logs in as that service, Flower as ``flower``."""
    bindir = str(Path(python).parent)
    progs: list[Program] = []
    redis_env = {user: {"REDIS_URL": url} for user, url in (redis_urls or {}).items()}
    for service in services:
        # Every process of a service writes its metrics where that service's /metrics reads them.
        env = {
            "PROMETHEUS_MULTIPROC_DIR": str(state_dir / "prometheus" / service),
            **redis_env.get(service, {}),
        }
        bind = f"127.0.0.1:{ports[service]}"
        progs += [
            Program(
                f"{service}-web",
                "web",
                web_command(bindir, service, bind),
                service,
                env={**env, **(web_env or {}).get(service, {})},
            ),
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
            env={
                "PROMETHEUS_MULTIPROC_DIR": str(state_dir / "prometheus" / "orchestrator"),
                **redis_env.get("orchestrator", {}),
            },
        )
    )
    progs.append(
        Program(
            "flower",
            "flower",
            flower_command(bindir, flower_port, app=FLOWER_APP),
            env={"FLOWER_BASIC_AUTH": flower_auth, **redis_env.get("flower", {})},
        )
    )
    if gateway == "nginx":
        gateway_command = nginx_command(gateway_config)
    else:
        gateway_command = envoy_command(bindir, gateway_config, envoy_base_id)
    progs.append(Program("gateway", "gateway", gateway_command, priority=200))
    return progs
