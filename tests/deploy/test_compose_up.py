"""`docker compose up`, for real: every container of docker-compose.yml on a Docker engine, the
API and the access rules through its gateway, a Redis restart mid-run, then `down -v`.

No registry is reachable where CI runs, so the images compose names are replaced by local
stand-ins (deploy/docker/standins/build.sh, cached between runs); the app image is built by
compose itself from deploy/docker/Dockerfile, as a user's `docker compose up --build` does.
Without a Docker engine these tests fail and say why (`.ci/run` starts one): they are never
skipped.

COMPOSE_E2E_PROJECT (cafeci) and COMPOSE_E2E_PORT_BASE (23000: gateway; +100 its operator
listener) let two runs share a machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.docker import prepare
from tests.deploy.compose_secrets import allowed_secrets, owner, secret_names
from tests.e2e.cafe import Cafe, bearer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("customer", "account", "order", "orchestrator")
PROJECT = os.environ.get("COMPOSE_E2E_PROJECT", "cafeci")
PORT_BASE = int(os.environ.get("COMPOSE_E2E_PORT_BASE", "23000"))
WORKDIR = ROOT / "var" / f"compose-{PROJECT}"
ITEMS = [{"menu_item_id": 1, "quantity": 2}]
# A cold run builds the stand-ins (debootstrap included) and the app image (`uv sync` from PyPI).
BUILD_TIMEOUT_S = 1800
HEALTHY_TIMEOUT_S = 300
WEB = tuple(f"{service}-web" for service in SERVICES)
# Containers that run once, to completion (exit 0), before what depends on them.
ONE_OFF = {"redis-acl", *(f"{service}-migrate" for service in SERVICES)}
# Each gateway's public and operator port on the host (the nginx profile runs both).
GATEWAY_PORTS = {"envoy": (PORT_BASE, PORT_BASE + 100), "nginx": (PORT_BASE + 80, PORT_BASE + 180)}


@dataclass
class Compose:
    env: dict[str, str]  # docker-compose's own environment: ports, images, key directories
    secrets: dict[str, str]  # the .env it reads

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{GATEWAY_PORTS['envoy'][0]}"

    def call(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        # The nginx profile too: the access checks run through both gateways.
        project = ["-p", PROJECT, "--env-file", str(WORKDIR / ".env"), "--profile", "nginx"]
        argv = ["docker-compose", *project, *args]
        return subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        result = self.call(*args, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(
                f"docker-compose {' '.join(args)} failed:\n{result.stdout[-4000:]}\n"
                f"{result.stderr[-4000:]}"
            )
        return result.stdout + result.stderr

    def containers(self) -> dict[str, dict[str, Any]]:
        """`docker inspect` of each of the project's containers, by compose service name."""
        ids = self.run("ps", "-a", "-q").split()
        if not ids:
            return {}
        inspected = json.loads(_docker("inspect", *ids))
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}

    def logs(self, *services: str) -> str:
        return self.run("logs", "--no-color", *services, timeout=120)


def _docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)}: {result.stderr}")
    return result.stdout


def _engine_problem() -> str | None:
    for tool in ("docker", "docker-compose"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs docker.io and docker-compose)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"no Docker engine: `docker info` says {info.stderr.strip()[-500:]}"
    return None


def _state(container: dict[str, Any]) -> str:
    state = container["State"]
    if "Health" in state:
        return str(state["Health"]["Status"])
    return (
        f"{state['Status']} {state['ExitCode']}" if state["Status"] == "exited" else state["Status"]
    )


def _wait_healthy(compose: Compose) -> dict[str, dict[str, Any]]:
    """Every long-running container healthy and every one-off exited 0."""
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while True:
        containers = compose.containers()
        states = {name: _state(c) for name, c in containers.items()}
        bad = {
            name: state
            for name, state in states.items()
            if state != ("exited 0" if name in ONE_OFF else "healthy")
        }
        if containers and not bad:
            return containers
        failed = {n: s for n, s in bad.items() if s.startswith("exited") or s == "unhealthy"}
        if failed or time.monotonic() > deadline:
            pytest.fail(f"containers not healthy: {bad}\n{compose.logs(*bad)[-6000:]}")
        time.sleep(2)


def _settings(path: Path) -> None:
    # Plain http on loopback: no redirect to https (the gateway has no TLS here).
    path.write_text("SECURE_SSL_REDIRECT=false\nLOG_LEVEL=INFO\n")


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    problem = _engine_problem()
    if problem:
        pytest.fail(problem)
    if WORKDIR.exists():
        shutil.rmtree(WORKDIR)
    WORKDIR.mkdir(parents=True)
    images = WORKDIR / "images.env"
    built = subprocess.run(
        ["bash", str(ROOT / "deploy/docker/standins/build.sh"), str(images)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    if built.returncode != 0:
        pytest.fail(f"stand-in images not built:\n{built.stderr[-4000:]}")
    prepare.fill_env(WORKDIR / ".env")
    prepare.ensure_keys(WORKDIR / "message-keys", WORKDIR / "token-keys")
    assert prepare.hand_to_image_user(WORKDIR / "message-keys", WORKDIR / "token-keys"), (
        "run as root: the keys must be readable by the image's user"
    )
    _settings(WORKDIR / "settings.env")
    env = {
        # Only what compose needs: nothing of this process's environment (CAFE_ENV, REDIS_URL,
        # …) may leak into the interpolation.
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        **{k: v for k, v in os.environ.items() if k.startswith("DOCKER_HOST")},
        # docker-py's build through the engine's own builder, as the stand-ins were built.
        "COMPOSE_DOCKER_CLI_BUILD": "0",
        "DOCKER_BUILDKIT": "0",
        "GATEWAY_PORT": str(GATEWAY_PORTS["envoy"][0]),
        "OPERATOR_PORT": str(GATEWAY_PORTS["envoy"][1]),
        "NGINX_PORT": str(GATEWAY_PORTS["nginx"][0]),
        "NGINX_OPERATOR_PORT": str(GATEWAY_PORTS["nginx"][1]),
        "CAFE_IMAGE": f"{PROJECT}/backend:latest",
        "MESSAGE_KEYS_DIR": str(WORKDIR / "message-keys"),
        "TOKEN_KEYS_HOST_DIR": str(WORKDIR / "token-keys"),
        "SETTINGS_FILE": str(WORKDIR / "settings.env"),
        **prepare.parse(images.read_text()),
    }
    running = Compose(env=env, secrets=prepare.parse((WORKDIR / ".env").read_text()))
    running.run("down", "-v", "--remove-orphans", check=False)
    try:
        up = running.call("up", "-d", "--build", timeout=BUILD_TIMEOUT_S)
        if up.returncode != 0:
            states = {name: _state(c) for name, c in running.containers().items()}
            pytest.fail(
                f"docker-compose up failed: {up.stderr[-3000:]}\n{states}\n"
                + running.logs(
                    *(n for n, st in states.items() if st not in {"healthy", "exited 0"})
                )[-6000:]
            )
        _wait_healthy(running)
        yield running
    finally:
        (WORKDIR / "compose.log").write_text(running.run("logs", "--no-color", check=False))
        running.run("down", "-v", "--remove-orphans", timeout=300, check=False)


@pytest.fixture(scope="module")
def cafe(compose: Compose) -> Iterator[Cafe]:
    with httpx.Client(base_url=compose.url, timeout=15.0) as http:
        login = http.post(
            "/api/v1/tokens",
            json={"username": "admin", "password": compose.secrets["ADMIN_PASSWORD"]},
        )
        assert login.status_code == 200, login.text
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        yield Cafe(http)


# --- least privilege -------------------------------------------------------------------------------


def test_each_container_receives_only_its_own_secrets(compose: Compose) -> None:
    secrets = {name: compose.secrets[name] for name in secret_names()}
    received = {}
    for name, container in compose.containers().items():
        env = "\n".join(container["Config"]["Env"])
        received[name] = {secret for secret, value in secrets.items() if value in env}
    assert {n: s for n, s in received.items() if s != allowed_secrets(n)} == {}, {
        n: sorted(s ^ allowed_secrets(n)) for n, s in received.items()
    }
    for name, container in compose.containers().items():
        mounts = {m["Destination"]: m["Source"] for m in container["Mounts"]}
        signing = mounts.get("/run/secrets/message-signing")
        if signing is not None:
            service = owner(name)
            assert service is not None, name
            assert signing == str(WORKDIR / "message-keys" / service), name


# --- the API through the gateway, with tokens ------------------------------------------------------


def test_checkout_cancellation_and_another_customers_view(cafe: Cafe) -> None:
    owner_id = cafe.customer(deposit=1000)
    checkout = cafe.checkout(owner_id, ITEMS)
    done = cafe.wait(checkout, timeout_s=120)
    assert done["state"] == "completed", done
    order = cafe.http.get(f"/api/v1/orders/{done['order_id']}", headers=cafe.as_customer(owner_id))
    assert order.status_code == 200 and order.json()["state"] == "approved", order.text
    charged = cafe.balance(owner_id)
    assert charged == 1000 - order.json()["total"]

    _, other_token = cafe.sign_up()
    for path in (f"/api/v1/checkouts/{checkout['id']}", f"/api/v1/orders/{done['order_id']}"):
        seen = cafe.http.get(path, headers=bearer(other_token))
        assert seen.status_code == 404, (path, seen.status_code, seen.text)
    assert (
        cafe.http.get(f"/api/v1/accounts/{owner_id}", headers=bearer(other_token)).status_code
        == 404
    )

    cancellation = cafe.cancel(done["order_id"])
    assert cafe.wait(cancellation, timeout_s=120)["state"] == "completed"
    assert cafe.balance(owner_id) == 1000
    cafe.assert_outcomes()


# --- operator surfaces: on the operator listener only ----------------------------------------------


@pytest.mark.parametrize("gateway", ["envoy", "nginx"])
def test_operator_surfaces_are_on_the_operator_listener_only(
    compose: Compose, gateway: str
) -> None:
    public_port, operator_port = GATEWAY_PORTS[gateway]
    user, _, password = compose.secrets["FLOWER_BASIC_AUTH"].partition(":")
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{public_port}", timeout=15.0) as public,
        httpx.Client(base_url=f"http://127.0.0.1:{operator_port}", timeout=15.0) as operator,
    ):
        assert public.get("/api/v1/menu").status_code == 200
        for service in SERVICES:
            assert public.get(f"/{service}/healthz").status_code == 200, service
            for path in (f"/{service}/admin/login/", f"/{service}/readyz", f"/{service}/metrics"):
                assert public.get(path).status_code == 404, path
                assert operator.get(path).status_code == 200, path
        assert public.get("/flower/").status_code == 404
        assert public.get("/flower/", auth=(user, password)).status_code == 404
        assert operator.get("/flower/").status_code == 401
        assert operator.get("/flower/", auth=(user, password)).status_code == 200


# --- the broker restarted mid-run -------------------------------------------------------------------


def test_a_redis_restart_loses_no_checkout(compose: Compose, cafe: Cafe) -> None:
    customer = cafe.customer(deposit=10_000)  # two checkouts
    # The orchestrator's worker stopped: the saga's messages wait in Redis while it restarts.
    compose.run("stop", "orchestrator-worker")
    before = cafe.checkout(customer, ITEMS)
    time.sleep(3)  # the append-only file is written every second
    assert cafe.http.get(f"/api/v1/checkouts/{before['id']}").json()["state"] not in {
        "completed",
        "rejected",
        "failed",
    }
    compose.run("restart", "redis")
    # Its append-only file replayed whole: no transaction refused by the ACL on the way
    # (docker-compose.yml, redis-acl, says why that happened).
    assert "NOPERM" not in compose.logs("redis")
    compose.run("start", "orchestrator-worker")
    assert cafe.wait(before, timeout_s=180)["state"] == "completed"
    after = cafe.checkout(customer, ITEMS)
    assert cafe.wait(after, timeout_s=120)["state"] == "completed"
    _wait_healthy(compose)
    cafe.assert_outcomes()


# --- what the containers logged ---------------------------------------------------------------------


def _expected(line: str) -> bool:
    """What the run causes on purpose while Redis restarts: the readiness probe's warning, with
    the exception (common.api.health logs the cause, the response names only the dependency),
    and Django's error line for that probe's 503."""
    _, _, record = line.partition("| ")
    try:
        entry = json.loads(record)
    except ValueError:
        return False
    message = str(entry.get("message", ""))
    probe = entry.get("logger") == "common.api.health" and entry.get("level") == "WARNING"
    answer = entry.get("logger") == "django.request" and entry.get("level") == "ERROR"
    return bool(
        (probe and message.startswith("readiness: Redis is unreachable"))
        or (answer and re.fullmatch(r"Service Unavailable: /[a-z]+/readyz", message))
    )


def test_web_containers_log_no_error(compose: Compose) -> None:
    logs = compose.logs(*WEB, *(f"{s}-migrate" for s in SERVICES))
    assert "Permission denied: '/app/.gunicorn'" not in logs
    unexpected = [
        line
        for line in logs.splitlines()
        if ("Traceback" in line or '"level": "ERROR"' in line) and not _expected(line)
    ]
    assert unexpected == []
