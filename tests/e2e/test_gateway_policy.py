"""The edge rules a healthy stack never exercises, checked on both gateways against a stand-in
upstream that fails on request: which requests are retried, the per-client rate limit, an
unreachable upstream, what the upstream is told about the client, and which surfaces each
listener serves."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from deploy.gateway import policy
from deploy.gateway.routes import FLOWER
from tests.e2e.gateways import GATEWAYS, Running, assert_problem, free_port, gateway

pytestmark = pytest.mark.e2e

LIMIT = policy.RateLimit(rps=1, burst=20)
# Under a public route of the customer upstream (its OpenAPI pages).
ANY = "/customer/api"
FAIL = f"{ANY}/fail/"


class Upstream(BaseHTTPRequestHandler):
    """Answers with the request's headers; a path under FAIL fails twice with 502."""

    protocol_version = "HTTP/1.1"
    hits: Counter[str] = Counter()

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.hits[self.path] += 1
        failing = self.path.startswith(FAIL) and self.hits[self.path] <= 2
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
def running(
    request: pytest.FixtureRequest,
    upstream: tuple[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    # Flower's address is one nobody listens on: an upstream that is down.
    upstreams = {"customer": upstream, FLOWER: ("127.0.0.1", free_port())}
    state: Path = tmp_path_factory.mktemp(request.param)
    with gateway(request.param, state, upstreams, LIMIT) as started:
        yield started


@pytest.fixture
def url(running: Running) -> str:
    return running.url


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
    path = f"{FAIL}{method}-{len(headers)}-{tries}-{url.rsplit(':', 1)[1]}"
    with client(url, "127.0.0.2") as http:
        response = http.request(method, path, headers=headers)

    assert Upstream.hits[path] == tries
    assert response.status_code == (200 if tries == 3 else 502)


def test_the_rate_limit_is_per_client_and_a_problem(url: str) -> None:
    with client(url, "127.0.0.3") as greedy, client(url, "127.0.0.4") as other:
        answers = [greedy.get(f"{ANY}/x") for _ in range(LIMIT.burst + 5)]
        limited = [a for a in answers if a.status_code == 429]

        assert [a.status_code for a in answers[: LIMIT.burst]] == [200] * LIMIT.burst
        assert limited
        assert_problem(limited[0], 429, "rate_limited")
        assert limited[0].headers["retry-after"] == str(policy.RETRY_AFTER_S)
        assert other.get(f"{ANY}/x").status_code == 200


def test_an_unreachable_upstream_is_a_problem(running: Running) -> None:
    with client(running.operator_url, "127.0.0.5") as http:
        response = http.get("/flower/")

    # Envoy says 503 (no healthy upstream), Nginx 502 (bad gateway); both as problems.
    code = {502: "bad_gateway", 503: "service_unavailable"}.get(response.status_code, "?")
    assert_problem(response, response.status_code, code)


def test_the_upstream_is_told_the_client_address_and_request_id(url: str) -> None:
    with client(url, "127.0.0.6") as http:
        response = http.get(
            f"{ANY}/echo",
            headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"},
        )

    seen = response.json()
    assert seen["x-forwarded-for"] == "127.0.0.6"
    assert "forwarded" not in seen
    assert seen["x-request-id"] == response.headers["x-request-id"]


OPERATOR_SURFACES = ("/customer/admin/", "/customer/readyz", "/customer/metrics", "/flower/")


@pytest.mark.parametrize("path", OPERATOR_SURFACES)
def test_operator_surfaces_are_not_on_the_public_listener(url: str, path: str) -> None:
    with client(url, "127.0.0.7") as http:
        assert_problem(http.get(path), 404, "not_found")


def test_the_operator_listener_serves_operator_surfaces_only(running: Running) -> None:
    with client(running.operator_url, "127.0.0.8") as http:
        ready = http.get("/customer/readyz", headers={"X-Auth-Subject": "forged"})

        assert ready.status_code == 200
        assert "x-auth-subject" not in ready.json()
        assert http.get("/customer/admin/login/").status_code == 200
        assert_problem(http.get("/api/v1/menu"), 404, "not_found")
        assert_problem(http.get("/customer/healthz"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/flower/api/task/async-apply/inbox.consume"),
        ("POST", "/flower/api/worker/shutdown/w1"),
        ("PUT", "/flower/"),
        ("DELETE", "/flower/api/tasks"),
        ("POST", "/flower/api/task/revoke/x"),
        ("GET", "/flower/api/task/send-task/inbox.consume"),
        ("GET", "/flower/api/task/apply/inbox.consume"),
        ("GET", "/flower/api/worker/pool/restart/w1"),
    ],
)
def test_flower_is_read_only(running: Running, method: str, path: str) -> None:
    with client(running.operator_url, "127.0.0.9") as http:
        refused = http.request(method, path, headers={"Idempotency-Key": "k"})

    assert_problem(refused, 403, "forbidden")


@pytest.mark.parametrize(
    "sent",
    ["short", "x" * 65, 'abc12345" forged="yes', "abc 12345 level=ERROR", "ünïcode-id-1"],
)
def test_a_malformed_request_id_is_replaced_before_anyone_sees_it(url: str, sent: str) -> None:
    with client(url, "127.0.0.10") as http:
        response = http.get(f"{ANY}/echo", headers={b"X-Request-Id": sent.encode()})

    forwarded = response.json()["x-request-id"]
    assert forwarded != sent
    assert re.fullmatch(policy.REQUEST_ID_PATTERN, forwarded)
    assert response.headers["x-request-id"] == forwarded


def test_a_well_formed_request_id_is_kept(url: str) -> None:
    sent = "client.id_0123-abc"
    with client(url, "127.0.0.11") as http:
        response = http.get(f"{ANY}/echo", headers={"X-Request-Id": sent})

    assert response.json()["x-request-id"] == response.headers["x-request-id"] == sent
