"""PostgreSQL and Redis for a local stack: found where the environment says, or on the standard
ports; if unreachable and installed, private instances are started under ``var/``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from common.messaging.routing import SERVICES
from common.settings.database import database_url
from deploy.local.layout import ROOT, Stack, log, reachable

PRIVATE_PG_PORT = 55432
PRIVATE_REDIS_PORT = 56379


def remember(stack: Stack, **values: str) -> None:
    """Use these settings now, and write them to .env so later ``manage.py`` runs find them too."""
    stack.env.update(values)
    env_file = ROOT / ".env"
    known = env_file.read_text() if env_file.exists() else ""
    with env_file.open("a") as out:
        for key, value in values.items():
            if f"{key}={value}" not in known:
                out.write(f"# written by `make up`: a private instance it started\n{key}={value}\n")


def pg_bin(name: str) -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return found[-1] if found else (Path(p) if (p := shutil.which(name)) else None)


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; run its tools as the 'postgres' user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def postgres_installed() -> bool:
    return pg_bin("initdb") is not None and pg_bin("pg_ctl") is not None


def postgres_ctl(data: Path, port: int, action: str, *extra: str) -> None:
    """``pg_ctl <action>`` (start, stop, restart…) of the private instance in ``data``, which
    listens on 127.0.0.1:``port`` only and keeps its socket and log in ``data``."""
    subprocess.run(
        as_postgres(
            [
                str(pg_bin("pg_ctl")),
                "-D",
                str(data),
                "-l",
                str(data / "server.log"),
                "-w",
                *extra,
                action,
                "-o",
                f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def start_private_postgres(data: Path, port: int) -> None:
    """A private PostgreSQL in ``data`` (created with trust auth if new) on ``port``."""
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        subprocess.run(
            as_postgres([str(pg_bin("initdb")), "-D", str(data), "-U", "postgres", "--auth=trust"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    if not reachable("127.0.0.1", port):
        postgres_ctl(data, port, "start")


def ensure_postgres(stack: Stack) -> None:
    first = urlsplit(database_url(SERVICES[0], os.environ))
    if reachable(first.hostname or "127.0.0.1", first.port or 5432):
        return
    if not postgres_installed():
        sys.exit(
            f"stack | PostgreSQL is not reachable at {first.hostname}:{first.port} and its server is "
            "not installed. Install it (Debian: apt-get install postgresql) or set "
            "<SERVICE>_DATABASE_URL / DATABASE_HOST and DATABASE_PORT."
        )
    data = ROOT / "var" / "postgres"
    log(f"PostgreSQL unreachable; starting a private instance in {data} on port {PRIVATE_PG_PORT}")
    start_private_postgres(data, PRIVATE_PG_PORT)
    remember(stack, DATABASE_HOST="127.0.0.1", DATABASE_PORT=str(PRIVATE_PG_PORT))


def start_private_redis(data: Path, port: int) -> None:
    """A private Redis on ``port`` that keeps nothing on disk (no RDB, no AOF): a restart loses
    everything it held. Its log and pid file are in ``data``."""
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(shutil.which("redis-server")),
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--logfile",
            str(data / "redis.log"),
            "--pidfile",
            str(data / "redis.pid"),
        ],
        check=True,
    )
    for _ in range(50):
        if reachable("127.0.0.1", port):
            break
        time.sleep(0.1)


def ensure_redis(stack: Stack) -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    parts = urlsplit(url)
    if reachable(parts.hostname or "127.0.0.1", parts.port or 6379):
        return
    server = shutil.which("redis-server")
    if server is None:
        sys.exit(
            f"stack | Redis is not reachable at {parts.hostname}:{parts.port} and redis-server is not "
            "installed. Install it (Debian: apt-get install redis-server) or set REDIS_URL."
        )
    data = ROOT / "var" / "redis"
    log(f"Redis unreachable; starting a private instance in {data} on port {PRIVATE_REDIS_PORT}")
    start_private_redis(data, PRIVATE_REDIS_PORT)
    db = parts.path.lstrip("/") or "0"
    remember(stack, REDIS_URL=f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/{db}")
