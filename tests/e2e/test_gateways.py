"""The same API checks through both gateways, in front of the same running services.

Envoy is the stack's own gateway. Nginx is started here, on a free port, from the same route
table (``deploy.gateway.nginx``), so a route or an edge rule that one gateway lacks shows up as a
test that passes for one parameter and fails for the other.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from deploy.gateway import policy
from tests.e2e.cafe import Cafe
from tests.e2e.conftest import DB_PREFIX, PG_DSN, SERVICES, Stack
from tests.e2e.gateways import GATEWAYS, Running, assert_problem

pytestmark = pytest.mark.e2e

# Any loopback address but the gateway's own: what a service sees as the client can then only
# have come from the gateway's peer address, not from gunicorn's (the gateway, 127.0.0.1).
CLIENT_ADDRESS = "127.0.0.2"
SPOOFED = "203.0.113.77"


@pytest.fixture(params=GATEWAYS)
def running(request: pytest.FixtureRequest, stack: Stack, nginx_gateway: Running) -> Running:
    if request.param == "envoy":
        return Running(stack.url, stack.operator_url)
    return nginx_gateway


@pytest.fixture
def url(running: Running) -> str:
    return running.url


@pytest.fixture
def operator_edge(running: Running) -> Iterator[httpx.Client]:
    """The same gateway's operator listener, where Flower is."""
    with httpx.Client(base_url=running.operator_url, timeout=15.0) as client:
        yield client


@pytest.fixture
def edge(url: str, operator_token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=15.0) as client:
        client.headers["Authorization"] = f"Bearer {operator_token}"
        yield client


def test_customer_account_and_idempotent_deposit(edge: httpx.Client) -> None:
    cafe = Cafe(edge)
    customer = cafe.customer()
    key = {"Idempotency-Key": f"gw-{uuid.uuid4()}"}
    path = f"/api/v1/accounts/{customer}/deposits"

    first = edge.post(path, json={"amount": 700}, headers=key)
    replay = edge.post(path, json={"amount": 700}, headers=key)

    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert edge.get(f"/api/v1/accounts/{customer}").json()["balance"] == 700


def test_menu_and_a_checkout_that_completes(edge: httpx.Client) -> None:
    cafe = Cafe(edge)
    menu = edge.get("/api/v1/menu").json()
    item = menu[0]
    customer = cafe.customer(deposit=item["price"])

    done = cafe.wait(cafe.checkout(customer, [{"menu_item_id": item["id"], "quantity": 1}]))

    assert len(menu) >= 6
    assert done["state"] == "completed"
    assert edge.get(f"/api/v1/orders/{done['order_id']}").json()["state"] == "approved"


def test_an_unknown_path_is_a_404_problem(edge: httpx.Client) -> None:
    assert_problem(edge.get("/nowhere"), 404, "not_found")
    assert_problem(edge.post("/api/v2/customers", json={}), 404, "not_found")


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_body_over_1_mib_is_a_413_problem(edge: httpx.Client, idempotent: bool) -> None:
    headers = {"content-type": "application/json"}
    if idempotent:
        headers["Idempotency-Key"] = f"gw-{uuid.uuid4()}"
    body = b'{"name": "' + b"x" * policy.MAX_BODY_BYTES + b'"}'

    response = edge.post("/api/v1/customers", content=body, headers=headers)

    assert_problem(response, 413, "payload_too_large")
    assert response.json()["title"] == "Payload Too Large"


def test_the_request_id_is_made_when_missing_and_kept_when_sent(edge: httpx.Client) -> None:
    made = edge.get("/api/v1/menu").headers.get("x-request-id")
    sent = f"gw-{uuid.uuid4()}"
    kept = edge.get("/api/v1/menu", headers={"X-Request-Id": sent}).headers.get("x-request-id")

    assert made
    assert kept == sent


def _outbox_headers(service: str, request_id: str) -> list[dict[str, str]]:
    """The headers of the messages a service sent on behalf of that request."""
    with psycopg.connect(PG_DSN, dbname=f"{DB_PREFIX}{service}") as conn:
        rows = conn.execute(
            "SELECT envelope->'headers' FROM outbox_message "
            "WHERE envelope->'headers'->>'request_id' = %s",
            (request_id,),
        ).fetchall()
    return [row[0] for row in rows]


def test_the_request_id_follows_every_message_the_request_causes(edge: httpx.Client) -> None:
    cafe = Cafe(edge)
    item = edge.get("/api/v1/menu").json()[0]
    customer = cafe.customer(deposit=item["price"])
    request_id = f"gw-{uuid.uuid4()}"

    response = edge.post(
        "/api/v1/checkouts",
        json={"customer_id": customer, "items": [{"menu_item_id": item["id"], "quantity": 1}]},
        headers={"X-Request-Id": request_id},
    )
    assert cafe.wait(response.json())["state"] == "completed"

    # The orchestrator's commands, and the replies of the services it commanded.
    assert _outbox_headers("orchestrator", request_id)
    assert _outbox_headers("order", request_id)
    assert _outbox_headers("account", request_id)


def _access_log_line(stack: Stack, service: str, request_id: str) -> dict[str, Any]:
    """gunicorn's access log line (a JSON object) of that request."""
    log = Path(stack.env["STACK_DIR"]) / "logs" / f"{service}-web.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in reversed(log.read_text().splitlines()):
            if line.startswith("{") and f'"request_id":"{request_id}"' in line:
                logged: dict[str, Any] = json.loads(line)
                if "client" in logged:
                    return logged
        time.sleep(0.05)
    raise AssertionError(f"no access log line with request_id {request_id} in {log}")


def test_the_service_sees_the_client_address_not_a_spoofed_one(stack: Stack, url: str) -> None:
    request_id = f"gw-{uuid.uuid4()}"
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    with httpx.Client(base_url=url, transport=transport, timeout=15.0) as client:
        response = client.get(
            "/customer/healthz", headers={"X-Forwarded-For": SPOOFED, "X-Request-Id": request_id}
        )

    logged = _access_log_line(stack, "customer", request_id)
    assert response.status_code == 200
    assert logged["client"] == logged["forwarded_for"] == CLIENT_ADDRESS
    assert SPOOFED not in json.dumps(logged)


def test_flower_requires_a_login(stack: Stack, operator_edge: httpx.Client) -> None:
    login = (stack.env["FLOWER_USER"], stack.env["FLOWER_PASSWORD"])

    assert operator_edge.get("/flower/").status_code == 401
    assert operator_edge.get("/flower/", auth=(login[0], "wrong")).status_code == 401
    assert operator_edge.get("/flower/", auth=login).status_code == 200


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_routed(edge: httpx.Client, service: str) -> None:
    response = edge.get(f"/{service}/healthz")

    assert (response.status_code, response.json()["service"]) == (200, service)


def test_flower_sees_the_workers_of_every_service(
    stack: Stack, operator_edge: httpx.Client
) -> None:
    """From their events (online, heartbeats, tasks): remote control is off, so no worker
    answers Flower's inspect broadcasts (nor its shutdown, pool or rate-limit commands)."""
    login = (stack.env["FLOWER_USER"], stack.env["FLOWER_PASSWORD"])
    deadline = time.monotonic() + 10
    while True:
        listed = operator_edge.get("/flower/workers", params={"json": 1}, auth=login)
        workers = listed.json()["data"]
        services = {w["hostname"].split("@")[0] for w in workers if w["status"]}
        if services == set(SERVICES) or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert services == set(SERVICES)
    inspected = operator_edge.get("/flower/api/workers", params={"refresh": 1}, auth=login)
    assert inspected.json() == {}


def test_flower_shows_every_command_of_a_saga_handled_by_its_service(
    stack: Stack, edge: httpx.Client, operator_edge: httpx.Client
) -> None:
    login = (stack.env["FLOWER_USER"], stack.env["FLOWER_PASSWORD"])
    cafe = Cafe(edge)
    item = edge.get("/api/v1/menu").json()[0]
    customer = cafe.customer(deposit=item["price"])
    done = cafe.wait(cafe.checkout(customer, [{"menu_item_id": item["id"], "quantity": 1}]))
    with psycopg.connect(PG_DSN, dbname=f"{DB_PREFIX}orchestrator") as conn:
        commands = conn.execute(
            "SELECT message_id::text, type, destination FROM outbox_message "
            "WHERE envelope->'correlation'->>'saga_id' = %s",
            (done["id"],),
        ).fetchall()
    assert {type_ for _, type_, _ in commands} == {
        "order.create_pending",
        "customer.verify",
        "account.debit",
        "order.approve",
    }

    # Each message travels in an inbox.consume task (alone, or with others for the same queue
    # when the workers are behind) whose args name it; the workers send no task-started event
    # (solo pool), so a task goes from received to succeeded in Flower.
    for message_id, type_, destination in commands:
        deadline = time.monotonic() + 10
        while True:
            found = operator_edge.get(
                "/flower/api/tasks", params={"search": message_id}, auth=login
            )
            succeeded = [t for t in found.json().values() if t["state"] == "SUCCESS"]
            if succeeded:
                break
            assert time.monotonic() < deadline, (type_, found.status_code, found.text)
            time.sleep(0.2)
        [task] = succeeded
        assert task["name"] == "inbox.consume"
        assert task["worker"].startswith(f"{destination}@")
        assert task["received"] and task["succeeded"] and task["runtime"] is not None
        assert type_ in task["args"]
