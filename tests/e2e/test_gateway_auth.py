"""Token verification and per-caller limits at both gateways, against a stand-in upstream.

The stand-in plays the customer service's part of the contract: it publishes a JWKS of a key
pair this test makes, and answers Nginx's ``/customer/auth/verify`` by verifying the token with
PyJWT. Every other path echoes the headers it received, so a test sees what a service would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from deploy.gateway import policy
from tests.e2e.gateways import GATEWAYS, Access, assert_problem, free_port, gateway

pytestmark = pytest.mark.e2e

ISSUER = "https://cafe.test/customer"
AUDIENCE = "cafe"
KID = "test-key-1"
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_JWK: dict[str, Any] = {
    **jwt.algorithms.ECAlgorithm.to_jwk(SIGNING_KEY.public_key(), as_dict=True),
    "kid": KID,
    "use": "sig",
    "alg": "ES256",
}
PUBLIC_PEM = SIGNING_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())

# Tight buckets, so a test reaches each within a few requests; the "caller" bucket stays above
# what the other tests make from one address or with one token.
LIMITS = {
    "caller": (1, 40),
    "checkout": (1, 3),
    "cancellation": (1, 3),
    "signup": (1, 3),
    "login": (1, 3),
}
CALLER_LIMITS = tuple(
    policy.CallerLimit(
        limit.name, limit.key, *LIMITS[limit.name], method=limit.method, path=limit.path
    )
    for limit in policy.CALLER_LIMITS
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": str(uuid.uuid4()),
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "scope": "customer",
        "client_id": "cafe-test",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def token(payload: dict[str, Any] | None = None, *, key: Any = SIGNING_KEY, kid: str = KID) -> str:
    return jwt.encode(
        payload or claims(), key, algorithm="ES256", headers={"kid": kid, "typ": "at+jwt"}
    )


def unsigned_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token PyJWT would refuse to make: ``alg: none``, or HS256 keyed with public material."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if secret is None:
        return f"{signing_input}."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def tampered() -> str:
    header, _, signature = token().split(".")
    forged = _b64(json.dumps(claims(scope="operator")).encode())
    return f"{header}.{forged}.{signature}"


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


class Upstream(BaseHTTPRequestHandler):
    """The JWKS, the verification endpoint, and an echo of the headers everywhere else."""

    protocol_version = "HTTP/1.1"
    verifications: Counter[str] = Counter()
    # The Connection header of each verification request, as the upstream received it.
    verify_connections: list[str] = []

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _verify(self) -> None:
        """The contract's /customer/auth/verify: 204 with the caller, or a 401 problem."""
        scheme, _, value = (self.headers.get("authorization") or "").partition(" ")
        self.verifications[value] += 1
        self.verify_connections.append(self.headers.get("connection", ""))
        try:
            if scheme.lower() != "bearer":
                raise jwt.InvalidTokenError("no bearer token")
            if jwt.get_unverified_header(value).get("kid") != KID:
                raise jwt.InvalidTokenError("unknown key")
            verified = jwt.decode(
                value,
                SIGNING_KEY.public_key(),
                algorithms=["ES256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.InvalidTokenError:
            body = json.dumps({"type": "about:blank", "status": 401, "code": "not_authenticated"})
            headers = {
                "content-type": policy.PROBLEM_CONTENT_TYPE,
                "www-authenticate": 'Bearer error="invalid_token"',
            }
            self._send(401, body.encode(), headers)
            return
        caller = {"x-auth-subject": verified["sub"]}
        if "scope" in verified:
            caller["x-auth-scope"] = verified["scope"]
        self._send(204, b"", caller)

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == policy.VERIFY_PATH:
            self._verify()
        elif self.path == policy.JWKS_PATH:
            body = json.dumps({"keys": [PUBLIC_JWK]}).encode()
            self._send(200, body, {"content-type": "application/json"})
        else:
            seen = [[name.lower(), value] for name, value in self.headers.items()]
            self._send(200, json.dumps(seen).encode(), {"content-type": "application/json"})

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(address: tuple[str, int]) -> Iterator[tuple[str, int]]:
    server = ThreadingHTTPServer(address, Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, int]]:
    with serving(("127.0.0.1", 0)) as address:
        yield address


ACCESS = Access(
    identity=policy.Identity(issuer=ISSUER, audience=AUDIENCE, jwks_cache_s=60),
    caller_limits=CALLER_LIMITS,
)
SERVICES = ("customer", "account", "order", "orchestrator")


@pytest.fixture(scope="module", params=GATEWAYS)
def url(
    request: pytest.FixtureRequest,
    upstream: tuple[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    upstreams = {service: upstream for service in SERVICES}
    state: Path = tmp_path_factory.mktemp(request.param)
    with gateway(request.param, state, upstreams, policy.RateLimit(), ACCESS) as running:
        _wait_for_keys(running.url)
        yield running.url


def _wait_for_keys(url: str) -> None:
    """Envoy fetches the JWKS in the background once it starts; wait until it has the keys."""
    deadline = time.monotonic() + 10
    with client(url, "127.0.0.250") as http:
        while http.get("/api/v1/orders", headers=bearer(token())).status_code != 200:
            assert time.monotonic() < deadline, "the gateway never accepted a valid token"
            time.sleep(0.1)


def client(url: str, address: str) -> httpx.Client:
    """A client from its own loopback address, so each test has its own address buckets."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=url, transport=transport, timeout=10.0)


def seen_headers(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    headers: list[list[str]] = response.json()
    return headers


def caller_headers(response: httpx.Response) -> list[list[str]]:
    """The caller headers the upstream got, however a client might have spelled them."""
    names = {name.replace("_", "-") for name in policy.AUTH_HEADERS}
    return [[n, v] for n, v in seen_headers(response) if n.replace("_", "-") in names]


def test_a_valid_token_passes_and_the_upstream_learns_the_caller(url: str) -> None:
    payload = claims(scope="customer operator")
    signed = token(payload)
    with client(url, "127.0.1.1") as http:
        response = http.get("/api/v1/orders", params={"page": 1}, headers=bearer(signed))

    assert sorted(caller_headers(response)) == [
        ["x-auth-scope", "customer operator"],
        ["x-auth-subject", payload["sub"]],
    ]
    # The services verify the token again, so it travels on.
    assert ["authorization", f"Bearer {signed}"] in seen_headers(response)


FORGED = {
    "X-Auth-Subject": "victim",
    "X-Auth-Scope": "operator",
    "x_auth_subject": "victim",
    "x_auth_scope": "operator",
}


@pytest.mark.parametrize(
    "path", ["/api/v1/menu", "/customer/healthz", "/api/v1/customers", "/api/v1/tokens"]
)
def test_caller_headers_sent_without_a_token_never_reach_the_upstream(url: str, path: str) -> None:
    with client(url, "127.0.1.2") as http:
        method = "GET" if path in ("/api/v1/menu", "/customer/healthz") else "POST"
        response = http.request(method, path, headers=FORGED)

    assert caller_headers(response) == []


def test_caller_headers_sent_with_a_token_are_replaced_by_the_verified_ones(url: str) -> None:
    payload = claims(scope=None)
    with client(url, "127.0.1.3") as http:
        response = http.get("/api/v1/orders", headers={**bearer(token(payload)), **FORGED})

    # The token has no scope: the client's "operator" must not survive either.
    assert caller_headers(response) == [["x-auth-subject", payload["sub"]]]


BAD_TOKENS = {
    "expired": lambda: token(claims(exp=int(time.time()) - 600, iat=int(time.time()) - 900)),
    "wrong audience": lambda: token(claims(aud="another-api")),
    "wrong issuer": lambda: token(claims(iss="https://evil.test/customer")),
    "unknown kid": lambda: token(key=OTHER_KEY, kid="not-published"),
    "known kid, other key": lambda: token(key=OTHER_KEY),
    "tampered payload": tampered,
    "alg none": lambda: unsigned_token(
        {"alg": "none", "typ": "at+jwt", "kid": KID}, claims(), None
    ),
    "HS256 keyed with the public JWK": lambda: unsigned_token(
        {"alg": "HS256", "typ": "at+jwt", "kid": KID},
        claims(),
        json.dumps(PUBLIC_JWK).encode(),
    ),
    "HS256 keyed with the public PEM": lambda: unsigned_token(
        {"alg": "HS256", "typ": "at+jwt", "kid": KID}, claims(), PUBLIC_PEM
    ),
    "not a JWT": lambda: "not-a-jwt",
}


@pytest.mark.parametrize("kind", [None, *BAD_TOKENS])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/orders"),
        ("GET", "/api/v1/customers"),
        ("POST", "/api/v1/checkouts"),
        ("POST", "/api/v1/menu"),
        ("POST", "/api/v1/accounts/00000000-0000-0000-0000-000000000001/deposits"),
    ],
)
def test_a_protected_route_refuses_a_missing_or_bad_token(
    url: str, kind: str | None, method: str, path: str
) -> None:
    headers = {} if kind is None else bearer(BAD_TOKENS[kind]())
    with client(url, "127.0.1.4") as http:
        response = http.request(method, path, headers=headers, json={})

    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("kind", [None, "expired", "tampered payload"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/menu"),
        ("HEAD", "/api/v1/menu"),
        ("POST", "/api/v1/customers"),
        ("POST", "/api/v1/tokens"),
        ("GET", "/customer/healthz"),
        ("GET", policy.JWKS_PATH),
    ],
)
def test_anonymous_routes_pass_whatever_token_they_carry(
    url: str, kind: str | None, method: str, path: str
) -> None:
    headers = {} if kind is None else bearer(BAD_TOKENS[kind]())
    with client(url, "127.0.1.5") as http:
        response = http.request(method, path, headers=headers)

    assert response.status_code == 200, response.text


def test_a_valid_token_on_an_anonymous_route_still_names_the_caller(url: str) -> None:
    payload = claims()
    with client(url, "127.0.1.6") as http:
        response = http.get("/api/v1/menu", headers=bearer(token(payload)))

    assert ["x-auth-subject", payload["sub"]] in caller_headers(response)


def _until_refused(http: httpx.Client, count: int, method: str, path: str, **kw: Any) -> list[int]:
    return [http.request(method, path, **kw).status_code for _ in range(count)]


@pytest.mark.parametrize("name", ["checkout", "cancellation"])
def test_sagas_are_limited_per_subject(url: str, name: str) -> None:
    path = next(limit.path for limit in CALLER_LIMITS if limit.name == name)
    assert path
    burst = LIMITS[name][1]
    greedy, other = bearer(token()), bearer(token())
    with client(url, "127.0.2.1") as http:
        statuses = _until_refused(http, burst + 5, "POST", path, headers=greedy, json={})
        refused = http.post(path, headers=greedy, json={})
        # Another subject from the same address has a bucket of its own, and so does every
        # other route of the same subject.
        others = http.post(path, headers=other, json={})
        reads = http.get("/api/v1/orders", headers=greedy)

    assert statuses[:burst] == [200] * burst
    assert 429 in statuses
    assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert (others.status_code, reads.status_code) == (200, 200)


@pytest.mark.parametrize("name", ["signup", "login"])
def test_sign_up_and_login_are_limited_per_address(url: str, name: str) -> None:
    path = next(limit.path for limit in CALLER_LIMITS if limit.name == name)
    assert path
    burst = LIMITS[name][1]
    address = "127.0.3.1" if name == "signup" else "127.0.3.2"
    with client(url, address) as http, client(url, "127.0.3.3") as neighbour:
        statuses = _until_refused(http, burst + 5, "POST", path, json={})
        # A token does not buy more attempts: the address is what counts here.
        with_token = http.post(path, headers=bearer(token()), json={})
        elsewhere = neighbour.post(path, json={})

    assert statuses[:burst] == [200] * burst
    assert 429 in statuses
    assert_problem(with_token, 429, "rate_limited")
    assert elsewhere.status_code == 200


def test_a_subject_has_one_bucket_whatever_its_address(url: str) -> None:
    burst = LIMITS["caller"][1]
    greedy = bearer(token())
    with client(url, "127.0.4.1") as first, client(url, "127.0.4.2") as second:
        statuses = _until_refused(first, burst, "GET", "/api/v1/orders", headers=greedy)
        moved = _until_refused(second, 5, "GET", "/api/v1/orders", headers=greedy)
        other = second.get("/api/v1/orders", headers=bearer(token()))

    assert statuses == [200] * burst
    assert 429 in moved
    assert other.status_code == 200


def test_a_polling_client_is_verified_at_most_once_per_cache_period(url: str) -> None:
    signed = token()
    # Fewer than the caller bucket holds.
    polls = LIMITS["caller"][1] // 2
    with client(url, "127.0.5.1") as http:
        statuses = {
            http.get("/api/v1/orders", headers=bearer(signed)).status_code for _ in range(polls)
        }

    assert statuses == {200}
    # Envoy checks signatures itself; Nginx asks the customer service, once per cached answer.
    assert Upstream.verifications[signed] <= 1


def test_nginx_keeps_its_connection_to_the_verifier_open(
    upstream: tuple[str, int], tmp_path: Path
) -> None:
    """A verification that asked to close its connection left Nginx a kept-alive connection the
    service was closing; the next request sent on it got 502."""
    upstreams = {service: upstream for service in SERVICES}
    Upstream.verify_connections.clear()
    with (
        gateway("nginx", tmp_path, upstreams, policy.RateLimit(), ACCESS) as running,
        client(running.url, "127.0.5.3") as http,
    ):
        statuses = [http.get("/api/v1/orders", headers=bearer(token())).status_code for _ in "abc"]

    assert statuses == [200] * 3
    assert len(Upstream.verify_connections) == 3
    assert not any("close" in value.lower() for value in Upstream.verify_connections)


@pytest.mark.parametrize("kind", GATEWAYS)
def test_tokens_pass_once_an_issuer_that_was_down_comes_up(
    kind: str, upstream: tuple[str, int], tmp_path: Path
) -> None:
    late = ("127.0.0.1", free_port())
    upstreams = {**{service: upstream for service in SERVICES}, "customer": late}
    signed = bearer(token())
    with (
        gateway(kind, tmp_path, upstreams, policy.RateLimit(), ACCESS) as running,
        client(running.url, "127.0.5.2") as http,
    ):
        down = http.get("/api/v1/orders", headers=signed)
        with serving(late):
            deadline = time.monotonic() + 10
            while (up := http.get("/api/v1/orders", headers=signed)).status_code != 200:
                assert time.monotonic() < deadline, up.text
                time.sleep(0.2)

    # Envoy has no keys yet (401), Nginx cannot ask (503); either way nothing gets through.
    expected = {401: "not_authenticated", 503: "service_unavailable"}
    assert_problem(down, down.status_code, expected.get(down.status_code, "?"))


class ExternalProvider(BaseHTTPRequestHandler):
    """Another identity provider: its own key, its JWKS at /jwks."""

    protocol_version = "HTTP/1.1"
    key = ec.generate_private_key(ec.SECP256R1())
    jwk: dict[str, Any] = {
        **jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True),
        "kid": "external-1",
        "alg": "ES256",
    }

    def do_GET(self) -> None:
        body = json.dumps({"keys": [self.jwk]}).encode()
        self.send_response(200 if self.path == "/jwks" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_envoy_takes_an_external_issuers_tokens_once_configured(
    upstream: tuple[str, int], tmp_path: Path
) -> None:
    """Nginx leaves this to the verification endpoint, so only Envoy is configured here."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ExternalProvider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    issuer = "https://idp.test/"
    identity = policy.Identity(
        issuer=issuer,
        audience="cafe-api",
        jwks_url=f"http://127.0.0.1:{server.server_address[1]}/jwks",
    )
    external = jwt.encode(
        claims(iss=issuer, aud="cafe-api"),
        ExternalProvider.key,
        algorithm="ES256",
        headers={"kid": "external-1"},
    )
    upstreams = {service: upstream for service in SERVICES}
    access = Access(identity=identity, caller_limits=CALLER_LIMITS)
    try:
        with (
            gateway("envoy", tmp_path, upstreams, policy.RateLimit(), access) as running,
            client(running.url, "127.0.6.1") as http,
        ):
            deadline = time.monotonic() + 10
            while (ok := http.get("/api/v1/orders", headers=bearer(external))).status_code != 200:
                assert time.monotonic() < deadline, ok.text
                time.sleep(0.2)
            bundled = http.get("/api/v1/orders", headers=bearer(token()))
    finally:
        server.shutdown()
        server.server_close()

    # The bundled provider's tokens are for an issuer this gateway no longer trusts.
    assert_problem(bundled, 401, "not_authenticated")
