"""Start a gateway for a test: Envoy or Nginx, configured by deploy.gateway, in its own directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.gateway import envoy, nginx, policy
from deploy.local.processes import NGINX

GATEWAYS = ("envoy", "nginx")
Upstreams = Mapping[str, tuple[str, int]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Access:
    """Whose tokens a test gateway accepts and its per-caller buckets; None: from the
    environment, as the real gateways."""

    identity: policy.Identity | None = None
    caller_limits: tuple[policy.CallerLimit, ...] | None = None


@dataclass(frozen=True)
class Running:
    """A test gateway's two listeners."""

    url: str
    operator_url: str


def _command(
    kind: str,
    state: Path,
    port: int,
    operator_port: int,
    upstreams: Upstreams,
    limit: policy.RateLimit,
    access: Access,
) -> list[str]:
    if kind == "nginx":
        if not os.access(NGINX, os.X_OK):
            raise RuntimeError(f"{NGINX} is missing: apt-get install nginx")
        config = state / "nginx.conf"
        user = "root" if os.geteuid() == 0 else None
        config.write_text(
            nginx.render(
                listen=("127.0.0.1", port),
                operator_listen=("127.0.0.1", operator_port),
                upstreams=upstreams,
                state_dir=state,
                user=user,
                workers=1,
                rate_limit=limit,
                caller_limits=access.caller_limits,
            )
        )
        return [NGINX, "-e", "stderr", "-c", str(config), "-g", "daemon off;"]
    config = state / "envoy.json"
    rendered = envoy.render(
        listen=("127.0.0.1", port),
        operator_listen=("127.0.0.1", operator_port),
        admin=("127.0.0.1", free_port()),
        upstreams=upstreams,
        rate_limit=limit,
        identity=access.identity,
        caller_limits=access.caller_limits,
    )
    config.write_text(json.dumps(rendered))
    envoy_bin = str(Path(sys.executable).parent / "envoy")
    # --base-id: Envoy's shared memory must not clash with another Envoy on this machine.
    return [envoy_bin, "-c", str(config), "--base-id", str(port), "--log-level", "warn"]


@contextmanager
def gateway(
    kind: str,
    state: Path,
    upstreams: Upstreams,
    limit: policy.RateLimit,
    access: Access | None = None,
) -> Iterator[Running]:
    """Run a gateway of ``kind`` until the block ends; yields its listeners' URLs."""
    state.mkdir(parents=True, exist_ok=True)
    port, operator_port = free_port(), free_port()
    command = _command(kind, state, port, operator_port, upstreams, limit, access or Access())
    log = state / f"{kind}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} exited with {process.returncode}:\n{log.read_text()}")
            try:
                for listening in (port, operator_port):
                    socket.create_connection(("127.0.0.1", listening), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} is not listening:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield Running(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{operator_port}")
    finally:
        process.terminate()
        process.wait(timeout=15)


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    """An error the way DESIGN.md §7 has every error: RFC 9457 problem+json with a code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == policy.PROBLEM_CONTENT_TYPE
    body = response.json()
    assert (body["type"], body["status"], body["code"]) == ("about:blank", status, code)
    assert body["title"] and body["detail"]
