"""PostgreSQL and Redis for a local stack: found where the environment says, or on the standard
ports; if unreachable and installed, private instances are started under ``var/``.

The private Redis has the ACL of common.messaging.redis_acl: one user per service and one for
Flower, with passwords generated once and kept in ``var/redis/passwords.json`` (mode 0600), and
the default user off. Each process then logs in as its own service (``Stack.redis_urls``). A
Redis found where ``REDIS_URL`` says is used as it is, with that one URL for every process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from common.messaging.redis_acl import USERS, acl_lines, user_url
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


def start_private_redis(data: Path, port: int, *, aclfile: Path | None = None) -> None:
    """A private Redis on ``port`` that keeps nothing on disk (no RDB, no AOF): a restart loses
    everything it held. Its log and pid file are in ``data``; its users in ``aclfile``, if given
    (see ``start_acl_redis``)."""
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
            *(["--aclfile", str(aclfile)] if aclfile is not None else []),
        ],
        check=True,
    )
    for _ in range(50):
        if reachable("127.0.0.1", port):
            break
        time.sleep(0.1)


def stop_private_redis(data: Path, port: int) -> None:
    """Stop the private Redis that ``start_private_redis`` started in ``data`` (by its pid: with
    the default user off, nobody may send it SHUTDOWN)."""
    pid_file = data / "redis.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    for _ in range(100):
        if not reachable("127.0.0.1", port):
            return
        time.sleep(0.1)


def _private(path: Path, text: str) -> None:
    """Write a file only its owner may read: it holds passwords, or their hashes."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def redis_passwords(data: Path, *, extra_users: tuple[str, ...] = ()) -> dict[str, str]:
    """Every Redis user's password, generated the first time and kept in ``data``."""
    data.mkdir(parents=True, exist_ok=True)
    path = data / "passwords.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = (*USERS, *extra_users)
    if any(user not in known for user in wanted):
        known = {user: known.get(user) or secrets.token_hex(24) for user in wanted} | known
        _private(path, json.dumps(known, indent=2) + "\n")
    return {user: known[user] for user in wanted}


def start_acl_redis(
    data: Path, port: int, *, db: int = 0, admin: str | None = None
) -> dict[str, str]:
    """A private Redis (``start_private_redis``) that admits only the users of
    common.messaging.redis_acl, plus ``admin`` with every right if named (a test's own view of
    the broker); returns each user's URL. Reuses the one already running on ``port`` if
    those users can log in to it."""
    extra = (admin,) if admin else ()
    passwords = redis_passwords(data, extra_users=extra)
    base = f"redis://127.0.0.1:{port}/{db}"
    urls = {user: user_url(base, user, password) for user, password in passwords.items()}
    lines = acl_lines({user: passwords[user] for user in USERS}, db=db)
    if admin:
        lines.insert(0, f"user {admin} on >{passwords[admin]} ~* &* +@all")
    aclfile = data / "users.acl"
    _private(aclfile, "".join(f"{line}\n" for line in lines))
    if not reachable("127.0.0.1", port):
        start_private_redis(data, port, aclfile=aclfile)
    if not _logs_in(urls[SERVICES[0]]):
        sys.exit(
            f"stack | cannot log in to the Redis on port {port} as {SERVICES[0]!r} (see "
            f"{data / 'redis.log'}; one started before these users existed? stop it: "
            f"kill $(cat {data / 'redis.pid'})) and try again"
        )
    return urls


def _logs_in(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


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
    db = int(parts.path.lstrip("/") or "0")
    if not reachable("127.0.0.1", PRIVATE_REDIS_PORT):
        log(
            f"Redis unreachable; starting a private instance in {data} on port "
            f"{PRIVATE_REDIS_PORT}, one user per service (passwords in {data / 'passwords.json'})"
        )
    stack.redis_urls = start_acl_redis(data, PRIVATE_REDIS_PORT, db=db)


def main(argv: list[str] | None = None) -> None:
    """``python -m deploy.local.backing redis-url <user>``: the URL a process of ``make up``'s
    private Redis logs in with (for a ``manage.py`` or ``celery`` command run by hand)."""
    parser = argparse.ArgumentParser(prog="python -m deploy.local.backing")
    sub = parser.add_subparsers(dest="command", required=True)
    url = sub.add_parser("redis-url", help="a user's URL of make up's private Redis")
    url.add_argument("user", choices=USERS)
    url.add_argument("--db", type=int, default=0)
    args = parser.parse_args(argv)
    path = ROOT / "var" / "redis" / "passwords.json"
    if not path.exists():
        sys.exit(f"no private Redis users yet ({path} is made by `make up`)")
    password = json.loads(path.read_text())[args.user]
    base = f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/{args.db}"
    print(user_url(base, args.user, password))


if __name__ == "__main__":
    main()
