"""The access matrix of DESIGN.md §7 "Identity and access": every route of the gateway's route
table × every kind of caller, through Envoy, through Nginx, and straight to each service's web
process (past the gateway, where the service's own verification is all there is).

The endpoints are listed per route prefix; a route of deploy/gateway/routes.py with no entry
here fails ``test_every_route_is_in_the_matrix``, so a new route cannot ship unchecked. Each is
called on the listener that serves it (operator surfaces on the operator listener), and every
operator surface is a 404 on the public listener.
"""

from __future__ import annotations

import base64
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from common.auth.keys import KeyRing
from deploy.gateway.routes import FLOWER, ROUTES, Listener
from deploy.local.stack import Stack as LocalStack
from tests.e2e.cafe import Cafe, bearer
from tests.e2e.conftest import PORT_BASE, ROOT, SERVICES, Stack
from tests.e2e.gateways import Running, assert_problem

pytestmark = pytest.mark.e2e

CUSTOMER_OWNER, OTHER, OPERATOR, ANONYMOUS = "owner", "other customer", "operator", "anonymous"
FORGED = (
    "expired",
    "tampered payload",
    "alg none",
    "HS256 keyed with the JWK",
    "wrong aud",
    "unknown kid",
    "unconfigured issuer",
)
IDENTITIES = (ANONYMOUS, CUSTOMER_OWNER, OTHER, OPERATOR, *FORGED)
CODES = {401: "not_authenticated", 403: "forbidden", 404: "not_found"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # with {owner}, {victim}, {order}, {checkout}, {cancellation} filled in per run
    # status for: anonymous, the owner, another customer, an operator (forged tokens: as anonymous
    # on a public endpoint, 401 everywhere else)
    expect: tuple[int, int, int, int]
    body: Callable[[dict[str, str]], Any] | None = None
    listener: Listener = Listener.PUBLIC

    @property
    def public(self) -> bool:
        return self.expect[0] not in {401}


def _sign_up(ids: dict[str, str]) -> dict[str, str]:
    return {
        "name": "Matrix",
        "email": f"{uuid.uuid4().hex}@example.com",
        "password": "matrix pw 42x",
    }


ITEMS = [{"menu_item_id": 1, "quantity": 1}]
EVERYONE = (200, 200, 200, 200)


def _service_pages(service: str) -> tuple[Endpoint, ...]:
    """Public documents and operator surfaces: no bearer token involved (their own logins)."""
    return (
        Endpoint("GET", f"/{service}/healthz", EVERYONE),
        Endpoint("GET", f"/{service}/api/schema/", EVERYONE),
        Endpoint("GET", f"/{service}/static/admin/css/base.css", EVERYONE),
        Endpoint("GET", f"/{service}/admin/login/", EVERYONE, listener=Listener.OPERATOR),
        Endpoint("GET", f"/{service}/readyz", EVERYONE, listener=Listener.OPERATOR),
        Endpoint("GET", f"/{service}/metrics", EVERYONE, listener=Listener.OPERATOR),
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/api/v1/customers", (401, 403, 403, 200)),
    Endpoint("POST", "/api/v1/customers", (201, 201, 201, 201), body=_sign_up),
    Endpoint("GET", "/api/v1/customers/{owner}", (401, 200, 404, 200)),
    Endpoint("POST", "/api/v1/customers/{victim}/block", (401, 403, 403, 200)),
    Endpoint("POST", "/api/v1/customers/{victim}/unblock", (401, 403, 403, 200)),
    Endpoint(
        "POST",
        "/api/v1/tokens",
        (200, 200, 200, 200),
        body=lambda ids: {"username": ids["owner_email"], "password": ids["password"]},
    ),
    Endpoint("GET", "/api/v1/accounts/{owner}", (401, 200, 404, 200)),
    Endpoint(
        "POST",
        "/api/v1/accounts/{owner}/deposits",
        (401, 201, 404, 201),
        body=lambda _: {"amount": 1},
    ),
    Endpoint("GET", "/api/v1/accounts/{owner}/entries", (401, 200, 404, 200)),
    Endpoint("GET", "/api/v1/menu", (200, 200, 200, 200)),
    Endpoint("GET", "/api/v1/orders?customer_id={owner}", (401, 200, 403, 200)),
    Endpoint("GET", "/api/v1/orders/{order}", (401, 200, 404, 200)),
    Endpoint(
        "POST",
        "/api/v1/checkouts",
        (401, 202, 403, 202),
        body=lambda ids: {"customer_id": ids["owner"], "items": ITEMS},
    ),
    Endpoint("GET", "/api/v1/checkouts/{checkout}", (401, 200, 404, 200)),
    Endpoint(
        "POST",
        "/api/v1/cancellations",
        (401, 202, 404, 202),
        body=lambda ids: {"order_id": ids["order"]},
    ),
    Endpoint("GET", "/api/v1/cancellations/{cancellation}", (401, 200, 404, 200)),
    Endpoint("GET", "/customer/.well-known/jwks.json", EVERYONE),
    Endpoint("GET", "/customer/.well-known/openid-configuration", EVERYONE),
    Endpoint("GET", "/orchestrator/api/docs/", EVERYONE),
    *(endpoint for service in SERVICES for endpoint in _service_pages(service)),
    # Basic auth, not a bearer token.
    Endpoint("GET", f"/{FLOWER}/", (401, 401, 401, 401), listener=Listener.OPERATOR),
)


def _route_of(path: str) -> Any:
    return max((r for r in ROUTES if path.startswith(r.prefix)), key=lambda r: len(r.prefix))


def test_every_route_is_in_the_matrix() -> None:
    covered = {_route_of(e.path.split("?")[0]).prefix for e in ENDPOINTS}
    assert {r.prefix for r in ROUTES} - covered == set()


def expected(endpoint: Endpoint, identity: str) -> int:
    if identity in FORGED:
        return endpoint.expect[0] if endpoint.public else 401
    return endpoint.expect[(ANONYMOUS, CUSTOMER_OWNER, OTHER, OPERATOR).index(identity)]


# --- the callers ---------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def forged_tokens(stack: Stack, owner: str, owner_token: str) -> dict[str, str]:
    """Each kind of bad token, for the owner. Those with a good signature are signed with the
    stack's own key (read from its key directory) so only the one flaw is left."""
    ring = KeyRing.load(Path(stack.env["STACK_DIR"]) / "token-keys", activate_after_s=0)
    key = ring.signing_key(datetime.now(UTC))
    claims = jwt.decode(owner_token, options={"verify_signature": False})
    now = int(time.time())

    def signed(**changes: Any) -> str:
        return jwt.encode(
            {**claims, "iat": now, "exp": now + 300, **changes},
            key.private_key,
            algorithm="ES256",
            headers={"kid": key.kid, "typ": "at+jwt"},
        )

    head, _, signature = owner_token.split(".")
    other_claims = {**claims, "sub": str(uuid.uuid4())}
    hs_header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    hs_input = _segments(hs_header, claims)
    jwk = json.dumps(key.public_jwk()).encode()
    stranger = ec.generate_private_key(ec.SECP256R1())
    return {
        "expired": signed(iat=now - 3600, nbf=now - 3600, exp=now - 600),
        "tampered payload": f"{head}.{_b64(json.dumps(other_claims).encode())}.{signature}",
        "alg none": _segments({"alg": "none", "typ": "at+jwt"}, claims) + ".",
        "HS256 keyed with the JWK": f"{hs_input}.{_b64(hmac.new(jwk, hs_input.encode(), 'sha256').digest())}",
        "wrong aud": signed(aud="another-api"),
        "unknown kid": jwt.encode(
            {**claims, "exp": now + 300},
            stranger,
            algorithm="ES256",
            headers={"kid": "not-a-known-key", "typ": "at+jwt"},
        ),
        "unconfigured issuer": signed(iss="https://idp.example.invalid/realm"),
    }


@dataclass
class World:
    ids: dict[str, str]
    headers: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def world(stack: Stack, operator_token: str) -> Iterator[World]:
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        http.headers["Authorization"] = f"Bearer {operator_token}"
        cafe = Cafe(http)
        owner = cafe.customer(deposit=1_000_000)
        other = cafe.customer()
        victim = cafe.customer()
        owner_email = next(c["email"] for c in [http.get(f"/api/v1/customers/{owner}").json()])
        placed = cafe.wait(cafe.checkout(owner, ITEMS))
        cancellation = cafe.cancel(placed["order_id"])
        ids = {
            "owner": owner,
            "victim": victim,
            "order": placed["order_id"],
            "checkout": placed["id"],
            "cancellation": cancellation["id"],
            "owner_email": owner_email,
            "password": "e2e correct horse battery",
        }
        headers = {
            ANONYMOUS: {},
            CUSTOMER_OWNER: cafe.as_customer(owner),
            OTHER: cafe.as_customer(other),
            OPERATOR: bearer(operator_token),
            **{
                kind: bearer(token)
                for kind, token in forged_tokens(stack, owner, cafe.tokens[owner]).items()
            },
        }
        yield World(ids, headers)


def direct_url(stack: Stack, path: str) -> str:
    """The web process (or Flower) that owns the path, past the gateway."""
    ports = LocalStack(dir=Path(stack.env["STACK_DIR"]), port_base=PORT_BASE)
    upstream = _route_of(path.split("?")[0]).upstream
    port = ports.flower_port if upstream == FLOWER else ports.service_port(upstream)
    return f"http://127.0.0.1:{port}"


Target = Callable[[Endpoint, str], str]


def _listener_url(running: Running, endpoint: Endpoint) -> str:
    return running.operator_url if endpoint.listener == Listener.OPERATOR else running.url


@pytest.fixture(params=["envoy", "nginx", "direct"])
def target(request: pytest.FixtureRequest, stack: Stack) -> Target:
    if request.param == "envoy":
        envoy = Running(stack.url, stack.operator_url)
        return lambda endpoint, _: _listener_url(envoy, endpoint)
    if request.param == "nginx":
        nginx: Running = request.getfixturevalue("nginx_gateway")
        return lambda endpoint, _: _listener_url(nginx, endpoint)
    return lambda _, path: direct_url(stack, path)


@pytest.mark.parametrize("gateway_kind", ["envoy", "nginx"])
def test_operator_surfaces_are_a_404_on_the_public_listener(
    request: pytest.FixtureRequest, stack: Stack, gateway_kind: str
) -> None:
    url = stack.url if gateway_kind == "envoy" else request.getfixturevalue("nginx_gateway").url
    operator_only = [e for e in ENDPOINTS if e.listener == Listener.OPERATOR]
    with httpx.Client(base_url=url, timeout=30) as http:
        for endpoint in operator_only:
            assert_problem(http.request(endpoint.method, endpoint.path), 404, "not_found")


def test_the_access_matrix(world: World, target: Target) -> None:
    failures = []
    checked = 0
    with httpx.Client(timeout=30) as http:
        for endpoint in ENDPOINTS:
            path = endpoint.path.format(**world.ids)
            for identity in IDENTITIES:
                body = endpoint.body(world.ids) if endpoint.body else None
                response = http.request(
                    endpoint.method,
                    target(endpoint, path) + path,
                    json=body,
                    headers=world.headers[identity],
                )
                checked += 1
                want = expected(endpoint, identity)
                problem = ""
                if response.status_code != want:
                    problem = f"status {response.status_code}, want {want}: {response.text[:200]}"
                elif want in CODES and not endpoint.path.startswith(f"/{FLOWER}/"):
                    code = response.json().get("code")
                    if response.headers.get("content-type") != "application/problem+json":
                        problem = f"content-type {response.headers.get('content-type')}"
                    elif code != CODES[want]:
                        problem = f"code {code!r}, want {CODES[want]!r}"
                    elif want == 401 and not response.headers.get(
                        "www-authenticate", ""
                    ).startswith("Bearer"):
                        problem = "401 without WWW-Authenticate: Bearer"
                if problem:
                    failures.append(f"{endpoint.method} {endpoint.path} as {identity}: {problem}")
    assert checked == len(ENDPOINTS) * len(IDENTITIES)
    assert failures == []


def test_a_blocked_customers_token_still_reads_but_their_checkout_is_rejected(
    stack: Stack, operator_token: str
) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        cafe = Cafe(http)
        customer = cafe.customer(deposit=10_000)
        email = http.get(f"/api/v1/customers/{customer}").json()["email"]
        assert http.post(f"/api/v1/customers/{customer}/block").status_code == 200

        done = cafe.wait(cafe.checkout(customer, ITEMS))
        login = http.post(
            "/api/v1/tokens", json={"username": email, "password": "e2e correct horse battery"}
        )

        assert (done["state"], done["reason"]) == ("rejected", "customer_blocked")
        assert (login.status_code, login.json()["code"]) == (403, "customer_blocked")
        mine = http.get(f"/api/v1/accounts/{customer}", headers=cafe.as_customer(customer))
        assert mine.status_code == 200  # a token already issued lives out its 15 minutes


def test_one_idempotency_key_of_two_customers_is_two_keys_at_the_same_time(
    stack: Stack,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with httpx.Client(base_url=stack.url, timeout=30) as http:
        cafe = Cafe(http)
        customers = [cafe.customer(deposit=10_000) for _ in range(2)]
        key = f"shared-{uuid.uuid4()}"

        def attempt(n: int) -> dict[str, Any]:
            customer = customers[n % 2]
            response = http.post(
                "/api/v1/checkouts",
                json={"items": ITEMS},
                headers={"Idempotency-Key": key, **cafe.as_customer(customer)},
            )
            assert response.status_code == 202, response.text
            body: dict[str, Any] = response.json()
            return body

        with ThreadPoolExecutor(max_workers=8) as pool:
            bodies = list(pool.map(attempt, range(16)))

        per_customer = {b["customer_id"]: b["id"] for b in bodies}
        assert set(per_customer) == set(customers)
        assert all(b["id"] == per_customer[b["customer_id"]] for b in bodies)
        for customer in customers:
            cafe.checkouts.append({"id": per_customer[customer], "customer_id": customer})
        cafe.wait_all()
        cafe.assert_outcomes()


def test_login_throttling_through_the_gateway(stack: Stack) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.3")  # its own client address
    with httpx.Client(base_url=stack.url, timeout=30, transport=transport) as http:
        cafe = Cafe(http)
        customer = cafe.customer()
        email = http.get(f"/api/v1/customers/{customer}").json()["email"]
        codes = [
            http.post("/api/v1/tokens", json={"username": email, "password": "wrong"}).status_code
            for _ in range(6)
        ]
        locked = http.post(
            "/api/v1/tokens", json={"username": email, "password": "e2e correct horse battery"}
        )

    assert codes == [401] * 5 + [429]
    assert (locked.status_code, locked.json()["code"]) == (429, "too_many_attempts")
    assert int(locked.headers["retry-after"]) > 0


def test_key_rotation_while_old_tokens_are_in_use(stack: Stack) -> None:
    """A new key is published at once and signs TOKEN_KEY_ACTIVATE_AFTER_S later (3 s in this
    stack, whose gateway refetches the JWKS every second); tokens of the old key keep working."""
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        cafe = Cafe(http)
        customer = cafe.customer(deposit=10_000)
        email = http.get(f"/api/v1/customers/{customer}").json()["email"]
        old = cafe.tokens[customer]
        keys = Path(stack.env["STACK_DIR"]) / "token-keys"
        added = subprocess.run(
            [sys.executable, "manage.py", "token_key_add", "--settings=customer.settings"],
            cwd=ROOT,
            env={**stack.env, "TOKEN_KEYS_DIR": str(keys)},
            capture_output=True,
            text=True,
            check=True,
        )
        new_kid = added.stdout.split()[2].rstrip(";")
        assert new_kid in [
            k["kid"] for k in http.get("/customer/.well-known/jwks.json").json()["keys"]
        ]
        time.sleep(float(stack.env["TOKEN_KEY_ACTIVATE_AFTER_S"]) + 1.5)
        login = http.post(
            "/api/v1/tokens", json={"username": email, "password": "e2e correct horse battery"}
        )
        new = login.json()["access_token"]

        assert jwt.get_unverified_header(new)["kid"] == new_kid
        assert jwt.get_unverified_header(old)["kid"] != new_kid
        for token in (old, new):  # through the gateway and into every service
            cafe.tokens[customer] = token
            assert (
                http.get(f"/api/v1/accounts/{customer}", headers=bearer(token)).status_code == 200
            )
            assert cafe.wait(cafe.checkout(customer, ITEMS))["state"] == "completed"
