"""Real relay and Celery worker processes against the test database and the test Redis.

Each process is started with the same command ``make up`` uses, for the service whose settings
the test run uses, pointed at this test run's database (e.g. ``test_account``) and Redis
database, and is killed when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from common.tests.support import broker, wait_until

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@dataclass
class Processes:
    env: dict[str, str]
    logs: Path
    service: str = "account"
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _start(
        self, name: str, cmd: list[str], extra_env: dict[str, str] | None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}-{len(self.running)}.log").open("wb")
        process = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running.append(process)
        return process

    def relay(self, *, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        cmd = [
            str(BIN / "python"),
            "manage.py",
            "relay",
            f"--settings={self.service}.settings",
            "--poll-interval=0.5",
        ]
        return self._start("relay", cmd, extra_env)

    def worker(
        self, *, extra_env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        ready = self.logs / f"worker-{len(self.running)}.ready"
        cmd = [
            str(BIN / "celery"),
            "-A",
            self.service,
            "worker",
            "--queues",
            self.service,
            "--hostname",
            f"test{len(self.running)}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *extra_args,
        ]
        process = self._start("worker", cmd, {**(extra_env or {}), "READY_FILE": str(ready)})
        # Ready once it consumes (Celery's worker_ready signal writes the marker).
        wait_until(ready.exists, timeout_s=60)
        return process

    def web(self, port: int, *, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """The service's gunicorn, as ``make up`` runs it but smaller, on ``port``."""
        cmd = [
            str(BIN / "gunicorn"),
            f"{self.service}.wsgi",
            *("--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread"),
            *("--threads", "4", "--preload", "--config", "python:common.gunicorn_conf"),
        ]
        return self._start("web", cmd, extra_env)

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and every child: no chance to finish or clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                self.kill(process)


@pytest.fixture
def processes(transactional_db: None, tmp_path: Path) -> Iterator[Processes]:
    db = connection.settings_dict
    service = settings.SERVICE_NAME
    env = {
        **os.environ,
        f"{service.upper()}_DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    running = Processes(env=env, logs=tmp_path, service=service)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def queue() -> Iterator[redis.Redis]:
    client = broker()
    client.flushdb()
    yield client
    client.flushdb()
