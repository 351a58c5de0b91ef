"""PostgreSQL restarted mid-run (a private server this test starts, stops and starts again):
while it is down the web process answers 503 ``unavailable`` and changes nothing; the relay and
the worker reconnect by themselves; nothing is lost."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from account.accounts.models import Account
from common.tests.integration.conftest import Processes
from common.tests.integration.test_poison import celery_message
from common.tests.integration.test_relay_faults import PrivateRedis
from common.tests.support import registered_event, wait_until, wire
from deploy.local.backing import postgres_ctl, postgres_installed, start_private_postgres
from tests.e2e.gateways import free_port

ROOT = Path(__file__).resolve().parents[3]
ACCOUNTS = sql.Identifier(Account._meta.db_table)


class PrivatePostgres:
    """A PostgreSQL server of this test's own, in a temporary directory (never the shared one),
    started and stopped with the local stack's own helpers (deploy/local/backing.py)."""

    def __init__(self, port: int) -> None:
        assert postgres_installed(), "PostgreSQL's server is not installed"
        self.port = port
        self.data = Path(tempfile.mkdtemp(prefix="pg-restart-")) / "data"
        if os.geteuid() == 0:
            shutil.chown(self.data.parent, "postgres", "postgres")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        start_private_postgres(self.data, self.port)

    def stop(self) -> None:
        postgres_ctl(self.data, self.port, "stop", "-m", "fast")  # connections cut, as in a restart

    def query(
        self, database: str, statement: str | sql.Composed, *params: object
    ) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url(database), autocommit=True) as connection:
            cursor = connection.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            postgres_ctl(self.data, self.port, "stop", "-m", "immediate")
        shutil.rmtree(self.data.parent, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(free_port())
    server.start()
    try:
        yield server
    finally:
        server.remove()


def sign_up(web: str, name: str) -> httpx.Response:
    body = {"name": name, "email": f"{name}@example.com", "password": "a long enough pass 7"}
    return httpx.post(f"{web}/api/v1/customers", json=body, timeout=30)


def test_postgresql_restarted_mid_run(postgres: PrivatePostgres, tmp_path: Path) -> None:
    broker = PrivateRedis(tmp_path, free_port())
    broker.start()
    env = {
        **os.environ,
        "CUSTOMER_DATABASE_URL": postgres.url("customer"),
        "ACCOUNT_DATABASE_URL": postgres.url("account"),
        "REDIS_URL": broker.url,
        "CELERY_VISIBILITY_TIMEOUT": "3",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    migrations = []
    for service in ("customer", "account"):
        postgres.query("postgres", sql.SQL("CREATE DATABASE {}").format(sql.Identifier(service)))
        migrations.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "migrate", f"--settings={service}.settings"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
            )
        )
    assert [migration.wait(timeout=300) for migration in migrations] == [0, 0]
    customer = Processes(env=env, logs=tmp_path, service="customer")
    account = Processes(env=env, logs=tmp_path / "account", service="account")
    (tmp_path / "account").mkdir()
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    try:
        running = [account.worker(), customer.web(port), customer.relay()]
        wait_until(lambda: _answers(f"{web}/customer/healthz"), timeout_s=60)

        def account_opened(customer_id: str) -> bool:
            rows = postgres.query(
                "account",
                sql.SQL("SELECT 1 FROM {} WHERE customer_id = %s").format(ACCOUNTS),
                customer_id,
            )
            return bool(rows)

        before = sign_up(web, "before")
        assert before.status_code == 201, before.text
        wait_until(lambda: account_opened(before.json()["id"]), timeout_s=30)

        postgres.stop()
        during = sign_up(web, "during")
        assert during.status_code == 503
        assert during.headers["content-type"] == "application/problem+json"
        assert during.json()["code"] == "unavailable"
        assert during.headers["Retry-After"] == "5"
        # An event that arrives while the database is down waits on the broker.
        arrived = uuid.uuid4()
        broker.client.lpush("account", celery_message(wire(registered_event(arrived))))
        wait_until(lambda: "retry: Retry in" in _logs(tmp_path), timeout_s=30)

        postgres.start()
        after = wait_until(lambda: _created(sign_up(web, "after")), timeout_s=30)
        wait_until(lambda: account_opened(after.json()["id"]), timeout_s=60)
        wait_until(lambda: account_opened(str(arrived)), timeout_s=60)

        # Nobody was restarted: each process reconnected by itself.
        assert all(process.poll() is None for process in running)
        names = [str(row[0]) for row in postgres.query("customer", _NAMES)]
        assert sorted(names) == ["after", "before"]  # the refused sign-up left nothing
        count = sql.SQL("SELECT count(*) FROM {}").format(ACCOUNTS)
        assert postgres.query("account", count) == [(3,)]
    finally:
        customer.stop_all()
        account.stop_all()
        broker.stop()


# (customer.customers.models.Customer: that app is not installed under account.settings)
_NAMES = "SELECT name FROM customers_customer"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _created(response: httpx.Response) -> httpx.Response | None:
    return response if response.status_code == 201 else None


def _logs(directory: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in directory.rglob("*.log"))
