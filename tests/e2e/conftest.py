"""A whole private stack for the end-to-end tests: every real process, behind the real gateway.

It is started with the same command as ``make up`` (``deploy.local.stack up --detach``), on
its own ports, databases (``e2e_<service>``) and Redis database, so it never touches the stack
a developer is running. E2E_PORT_BASE, E2E_REDIS_URL and E2E_DB_PREFIX (which also names the
stack's directory under var/) let two such runs share a machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest
import redis

from tests.tracing.otlp import Receiver, receiving

if TYPE_CHECKING:
    from tests.e2e.gateways import Running

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("customer", "account", "order", "orchestrator")
PORT_BASE = int(os.environ.get("E2E_PORT_BASE", "18000"))
REDIS_URL = os.environ.get("E2E_REDIS_URL", "redis://127.0.0.1:6379/1")
PG_DSN = os.environ.get("E2E_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_PREFIX = os.environ.get("E2E_DB_PREFIX", "e2e_")
# The stack's OpenTelemetry collector: the test's own OTLP/HTTP receiver.
OTLP_PORT = PORT_BASE + 77
STACK_DIR = ROOT / "var" / ("e2e" if DB_PREFIX == "e2e_" else f"{DB_PREFIX}stack")


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    # The gateway's operator listener: admin, readiness, metrics, Flower.
    operator_url: str = ""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=15.0)

    def operator_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.operator_url, timeout=15.0)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
        )

    def manage(self, service: str, *args: str) -> str:
        return self.run("manage.py", *args, f"--settings={service}.settings").stdout

    def supervisorctl(self, *args: str) -> str:
        conf = Path(self.env["STACK_DIR"]) / "supervisord.conf"
        bindir = Path(sys.executable).parent
        return subprocess.run(
            [str(bindir / "supervisorctl"), "-c", str(conf), *args], capture_output=True, text=True
        ).stdout


def _fresh_databases() -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for service in SERVICES:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_PREFIX}{service}" WITH (FORCE)')


@pytest.fixture(scope="session")
def otlp() -> Iterator[Receiver]:
    """Every span the stack exports, over OTLP/HTTP, as Jaeger would receive them."""
    with receiving(OTLP_PORT) as receiver:
        yield receiver


@pytest.fixture(scope="session")
def stack(otlp: Receiver) -> Iterator[Stack]:
    env = {
        **os.environ,
        # Traced like a stack with Jaeger: every process exports to the test's receiver, in
        # batches sent 0.2 s apart so a test need not wait long for them.
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        # A local development stack (common/settings/production.py), like `make up`.
        "CAFE_ENV": "development",
        "STACK_DIR": str(STACK_DIR),
        "STACK_PORT_BASE": str(PORT_BASE),
        "DATABASE_NAME_PREFIX": DB_PREFIX,
        "REDIS_URL": REDIS_URL,
        "ADMIN_USERNAME": "admin",
        "ADMIN_PASSWORD": "e2e-admin",
        "FLOWER_USER": "flower",
        "FLOWER_PASSWORD": "e2e-flower",
        # Key rotation is tested: a new key signs 3 s after it was added (the gateway's JWKS
        # cache is shorter than that).
        "TOKEN_KEY_ACTIVATE_AFTER_S": "3",
        "GATEWAY_JWKS_CACHE_S": "1",
        # One test runs a hundred checkouts of one customer at once.
        "SAGAS_IN_FLIGHT_PER_CUSTOMER": "1000",
        # Short reply deadlines, so the fault tests see the sweep recover lost messages quickly.
        "SAGA_REPLY_TIMEOUT_S": "1.5",
        "SAGA_BACKOFF_CAP_S": "5",
        "SAGA_MAX_ATTEMPTS": "6",
        # Every test signs up and logs in from this one address, and some start many sagas for
        # one customer; the tight per-caller buckets have their own tests (test_gateway_auth).
        **{
            f"GATEWAY_RATE_LIMIT_{name}_{part}": value
            for name in ("SIGNUP", "LOGIN", "CHECKOUT", "CANCELLATION")
            for part, value in (("RPS", "1000"), ("BURST", "2000"))
        },
    }
    for service in SERVICES:
        env.pop(f"{service.upper()}_DATABASE_URL", None)
    running = Stack(
        url=f"http://127.0.0.1:{PORT_BASE}",
        env=env,
        operator_url=f"http://127.0.0.1:{PORT_BASE + 100}",
    )
    running.run("-m", "deploy.local.stack", "down", check=False)
    _fresh_databases()
    redis.Redis.from_url(REDIS_URL).flushdb()
    started = running.run("-m", "deploy.local.stack", "up", "--detach", check=False)
    if started.returncode != 0:
        pytest.fail(f"stack did not start:\n{started.stdout}\n{started.stderr}")
    try:
        yield running
    finally:
        running.run("-m", "deploy.local.stack", "down", check=False)


def login(url: str, username: str, password: str) -> str:
    """An access token from the bundled identity provider, through the gateway."""
    response = httpx.post(
        f"{url}/api/v1/tokens", json={"username": username, "password": password}, timeout=15
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="session")
def operator_token(stack: Stack) -> str:
    from tests.e2e.cafe import OPERATOR

    return login(stack.url, *OPERATOR)


@pytest.fixture
def gateway(stack: Stack, operator_token: str) -> Iterator[httpx.Client]:
    """A client of the gateway with an operator's token (who may read everything and act for
    any customer); ``Cafe`` logs its customers in and acts as each of them."""
    with stack.client() as client:
        client.headers["Authorization"] = f"Bearer {operator_token}"
        yield client


@pytest.fixture
def operator(stack: Stack) -> Iterator[httpx.Client]:
    """A client of the gateway's operator listener (no token: each page has its own login)."""
    with stack.operator_client() as client:
        yield client


@pytest.fixture(scope="session")
def nginx_gateway(stack: Stack) -> Iterator[Running]:
    """An Nginx gateway in front of the stack's services and Flower, stopped at the end."""
    from deploy.gateway import policy
    from deploy.gateway.routes import FLOWER
    from deploy.local.stack import Stack as LocalStack
    from tests.e2e.gateways import Access, gateway

    ports = LocalStack(dir=Path(stack.env["STACK_DIR"]), port_base=PORT_BASE)
    upstreams = {s: ("127.0.0.1", ports.service_port(s)) for s in SERVICES}
    upstreams[FLOWER] = ("127.0.0.1", ports.flower_port)
    state = Path(stack.env["STACK_DIR"]) / "nginx-conformance"
    limit = policy.RateLimit.from_env(stack.env)
    access = Access(caller_limits=policy.caller_limits(stack.env))
    with gateway("nginx", state, upstreams, limit, access) as running:
        yield running
