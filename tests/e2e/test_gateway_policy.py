"""The edge rules a healthy stack never exercises, checked on both gateways against a stand-in
upstream that fails on request: which requests are retried, the per-client rate limit, an
unreachable upstream, and what the upstream is told about the client."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from deploy.gateway import policy
from deploy.gateway.routes import FLOWER
from tests.e2e.gateways import GATEWAYS, assert_problem, free_port, gateway

pytestmark = pytest.mark.e2e

LIMIT = policy.RateLimit(rps=1, burst=20)


class Upstream(BaseHTTPRequestHandler):
    """Answers with the request's headers; a path under /customer/fail/ fails twice with 502."""

    protocol_version = "HTTP/1.1"
    hits: Counter[str] = Counter()

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.hits[self.path] += 1
        failing = self.path.startswith("/customer/fail/") and self.hits[self.path] <= 2
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(502 if failing else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module", params=GATEWAYS)
def url(
    request: pytest.FixtureRequest,
    upstream: tuple[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    # Flower's address is one nobody listens on: an upstream that is down.
    upstreams = {"customer": upstream, FLOWER: ("127.0.0.1", free_port())}
    state: Path = tmp_path_factory.mktemp(request.param)
    with gateway(request.param, state, upstreams, LIMIT) as running:
        yield running


def client(url: str, address: str) -> httpx.Client:
    """A client from its own loopback address, so each test has its own rate-limit bucket."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=url, transport=transport, timeout=10.0)


@pytest.mark.parametrize(
    ("method", "headers", "tries"),
    [
        ("GET", {}, 3),
        ("HEAD", {}, 3),
        ("POST", {"Idempotency-Key": "k"}, 3),
        ("POST", {}, 1),
        ("POST", {"Idempotency-Key": ""}, 1),
        # A client may not ask for retries itself.
        ("POST", {"x-envoy-retry-on": "5xx", "x-envoy-max-retries": "3"}, 1),
    ],
)
def test_only_requests_safe_to_repeat_are_retried(
    url: str, method: str, headers: dict[str, str], tries: int
) -> None:
    path = f"/customer/fail/{method}-{len(headers)}-{tries}-{url.rsplit(':', 1)[1]}"
    with client(url, "127.0.0.2") as http:
        response = http.request(method, path, headers=headers)

    assert Upstream.hits[path] == tries
    assert response.status_code == (200 if tries == 3 else 502)


def test_the_rate_limit_is_per_client_and_a_problem(url: str) -> None:
    with client(url, "127.0.0.3") as greedy, client(url, "127.0.0.4") as other:
        answers = [greedy.get("/customer/x") for _ in range(LIMIT.burst + 5)]
        limited = [a for a in answers if a.status_code == 429]

        assert [a.status_code for a in answers[: LIMIT.burst]] == [200] * LIMIT.burst
        assert limited
        assert_problem(limited[0], 429, "rate_limited")
        assert limited[0].headers["retry-after"] == str(policy.RETRY_AFTER_S)
        assert other.get("/customer/x").status_code == 200


def test_an_unreachable_upstream_is_a_problem(url: str) -> None:
    with client(url, "127.0.0.5") as http:
        response = http.get("/flower/")

    # Envoy says 503 (no healthy upstream), Nginx 502 (bad gateway); both as problems.
    code = {502: "bad_gateway", 503: "service_unavailable"}.get(response.status_code, "?")
    assert_problem(response, response.status_code, code)


def test_the_upstream_is_told_the_client_address_and_request_id(url: str) -> None:
    with client(url, "127.0.0.6") as http:
        response = http.get(
            "/customer/echo",
            headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"},
        )

    seen = response.json()
    assert seen["x-forwarded-for"] == "127.0.0.6"
    assert "forwarded" not in seen
    assert seen["x-request-id"] == response.headers["x-request-id"]
