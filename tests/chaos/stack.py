"""The chaos run's own stack: private PostgreSQL and Redis instances, and ``make up``'s stack
(``deploy.local.stack``) on top of them with its own directory and ports.

Nothing here touches a server the user runs for anything else: PostgreSQL is created with
``initdb`` in the run's directory and listens on a private port, Redis keeps nothing on disk.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import redis

from deploy.local.backing import (
    postgres_ctl,
    postgres_installed,
    start_private_postgres,
    start_private_redis,
)
from deploy.local.layout import ROOT, reachable
from deploy.local.layout import Stack as LocalStack
from deploy.local.supervisor import supervisorctl

SERVICES = ("customer", "account", "order", "orchestrator")
# Offsets from the port base, past the local stack's own (+0…+4, +55, +100, +1901).
PG_OFFSET = 2001
REDIS_OFFSET = 2002


@dataclass
class ChaosStack:
    dir: Path
    port_base: int
    # Settings for every process of the stack; the caller's environment wins over the defaults
    # given in ``settings`` (so a user can try other deadlines), never over the private servers.
    settings: dict[str, str] = field(default_factory=dict)
    operator: tuple[str, str] = ("admin", secrets.token_urlsafe(12))

    @cached_property
    def pg_data(self) -> Path:
        """In the run's directory, unless PostgreSQL's user cannot reach it (a checkout under
        root's home, when run as root): then in the temporary directory."""
        if os.geteuid() != 0 or _postgres_can_reach(self.dir):
            return self.dir / "postgres"
        return Path(tempfile.gettempdir()) / f"cafe-chaos-{self.port_base}" / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.dir / "redis"

    @property
    def pg_port(self) -> int:
        return self.port_base + PG_OFFSET

    @property
    def redis_port(self) -> int:
        return self.port_base + REDIS_OFFSET

    @property
    def local(self) -> LocalStack:
        return LocalStack(dir=self.dir / "stack", port_base=self.port_base)

    @property
    def url(self) -> str:
        return self.local.url

    @property
    def operator_url(self) -> str:
        return self.local.operator_url

    @property
    def env(self) -> dict[str, str]:
        env = {**self.settings, **os.environ}
        for service in SERVICES:
            env.pop(f"{service.upper()}_DATABASE_URL", None)
        username, password = self.operator
        return env | {
            "CAFE_ENV": "development",
            "STACK_DIR": str(self.local.dir),
            "STACK_PORT_BASE": str(self.port_base),
            "GATEWAY": "envoy",
            "DATABASE_HOST": "127.0.0.1",
            "DATABASE_PORT": str(self.pg_port),
            "DATABASE_USER": "postgres",
            "DATABASE_NAME_PREFIX": "",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "ADMIN_USERNAME": username,
            "ADMIN_PASSWORD": password,
            "FLOWER_USER": "flower",
            "FLOWER_PASSWORD": secrets.token_urlsafe(12),
        }

    # --- the backing servers --------------------------------------------------------------

    def start_backing(self) -> None:
        if not postgres_installed() or shutil.which("redis-server") is None:
            sys.exit(
                "chaos | needs PostgreSQL's server (initdb, pg_ctl) and redis-server installed "
                "(Debian: apt-get install postgresql redis-server); it never uses a running one."
            )
        for port in (self.pg_port, self.redis_port, self.port_base):
            if reachable("127.0.0.1", port):
                sys.exit(f"chaos | port {port} is taken; choose another CHAOS_PORT_BASE")
        # A fresh cluster each run: the audit reads everything the run made, and only that.
        shutil.rmtree(self.pg_data, ignore_errors=True)
        start_private_postgres(self.pg_data, self.pg_port)
        self.start_redis()

    def start_redis(self) -> None:
        start_private_redis(self.redis_dir, self.redis_port)

    def stop_redis(self) -> None:
        """Shut Redis down without saving: everything it held is gone."""
        subprocess.run(
            ["redis-cli", "-p", str(self.redis_port), "shutdown", "nosave"],
            capture_output=True,
            check=False,
        )
        deadline = time.monotonic() + 10
        while reachable("127.0.0.1", self.redis_port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def redis_keys(self) -> int:
        client = redis.Redis(port=self.redis_port, socket_timeout=5)
        try:
            return int(client.dbsize())
        finally:
            client.close()

    def stop_postgres(self) -> None:
        postgres_ctl(self.pg_data, self.pg_port, "stop", "-m", "fast")

    def start_postgres(self) -> None:
        postgres_ctl(self.pg_data, self.pg_port, "start")

    def stop_backing(self) -> None:
        self.stop_redis()
        if (self.pg_data / "postmaster.pid").exists():
            try:
                self.stop_postgres()
            except subprocess.CalledProcessError:
                print("chaos | PostgreSQL did not stop; see", self.pg_data / "server.log")

    # --- the stack on top -----------------------------------------------------------------

    def _stack(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "deploy.local.stack", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def up(self) -> None:
        self.start_backing()
        started = self._stack("up", "--detach")
        if started.returncode != 0:
            self.down()
            sys.exit(f"chaos | the stack did not start:\n{started.stdout}\n{started.stderr}")

    def down(self) -> None:
        self._stack("down")
        self.stop_backing()

    # --- its processes ----------------------------------------------------------------------

    def pid(self, program: str) -> int | None:
        out = supervisorctl(self.local, "pid", program).stdout.strip()
        return int(out) if out.isdigit() and out != "0" else None

    def signal(self, program: str, signum: signal.Signals) -> bool:
        """Send ``signum`` to the program's whole process group; False if it was not running."""
        pid = self.pid(program)
        if pid is None:
            return False
        try:
            os.killpg(os.getpgid(pid), signum)
        except ProcessLookupError:
            return False
        return True


def _postgres_can_reach(directory: Path) -> bool:
    directory.mkdir(parents=True, exist_ok=True)
    probe = ["runuser", "-u", "postgres", "--", "test", "-x", str(directory)]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0
