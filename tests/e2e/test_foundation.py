"""Through the gateway only: customers, accounts, deposits, the menu and orders; operator pages
(on the gateway's operator listener)."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid

import httpx
import pytest

from tests.e2e.cafe import PASSWORD
from tests.e2e.conftest import SERVICES, Stack

pytestmark = pytest.mark.e2e


def new_customer(gateway: httpx.Client) -> dict[str, object]:
    response = gateway.post(
        "/api/v1/customers",
        json={"name": "E2E", "email": f"{uuid.uuid4().hex}@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_account(gateway: httpx.Client, customer_id: str, timeout_s: float = 5.0) -> float:
    """Poll until customer.registered has opened the account; returns how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if gateway.get(f"/api/v1/accounts/{customer_id}").status_code == 200:
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"account {customer_id} not opened within {timeout_s}s")


def test_registering_a_customer_opens_the_account_within_a_second(
    gateway: httpx.Client, operator: httpx.Client
) -> None:
    customer_id = str(new_customer(gateway)["id"])

    took = wait_for_account(gateway, customer_id)

    assert took < 1.0
    account = gateway.get(f"/api/v1/accounts/{customer_id}").json()
    assert (account["balance"], account["currency"]) == (0, "JPY")
    # The relay's counters reach the web's /metrics (shared multiprocess directory).
    metrics = operator.get("/customer/metrics").text
    assert 'outbox_published_total{destination="account"}' in metrics
    assert "outbox_commit_to_publish_seconds_bucket" in metrics
    handled = operator.get("/account/metrics").text
    assert 'inbox_handled_total{type="customer.registered"}' in handled


def test_customer_account_and_idempotent_deposit(stack: Stack, gateway: httpx.Client) -> None:
    customer = new_customer(gateway)
    customer_id = str(customer["id"])
    assert gateway.get(f"/api/v1/customers/{customer_id}").json() == customer
    wait_for_account(gateway, customer_id)

    first = gateway.post(
        f"/api/v1/accounts/{customer_id}/deposits",
        json={"amount": 5000},
        headers={"Idempotency-Key": "e2e-dep"},
    )
    replay = gateway.post(
        f"/api/v1/accounts/{customer_id}/deposits",
        json={"amount": 5000},
        headers={"Idempotency-Key": "e2e-dep"},
    )
    reused = gateway.post(
        f"/api/v1/accounts/{customer_id}/deposits",
        json={"amount": 1},
        headers={"Idempotency-Key": "e2e-dep"},
    )

    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert gateway.get(f"/api/v1/accounts/{customer_id}").json()["balance"] == 5000
    assert gateway.get(f"/api/v1/accounts/{customer_id}/entries").json()["count"] == 1


def test_menu_orders_and_errors(gateway: httpx.Client) -> None:
    menu = gateway.get("/api/v1/menu").json()
    assert len(menu) >= 6
    assert gateway.get(f"/api/v1/orders?customer_id={uuid.uuid4()}").json()["count"] == 0
    assert gateway.get(f"/api/v1/orders/{uuid.uuid4()}").status_code == 404
    bad = gateway.post(
        "/api/v1/customers", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert (bad.status_code, bad.json()["code"]) == (400, "malformed_request")
    unrouted = gateway.get("/nowhere")
    assert (unrouted.status_code, unrouted.headers["content-type"]) == (
        404,
        "application/problem+json",
    )
    assert gateway.get("/api/v1/menu").headers.get("x-request-id")


@pytest.mark.parametrize("service", SERVICES)
def test_public_pages_load_through_the_gateway(gateway: httpx.Client, service: str) -> None:
    assert gateway.get(f"/{service}/healthz").status_code == 200
    docs = gateway.get(f"/{service}/api/docs/")
    assert docs.status_code == 200
    assert gateway.get(f"/{service}/api/schema/").status_code == 200
    # Swagger UI's own files.
    scripts = re.findall(r'src="(/[^"]+\.js)"', docs.text)
    assert scripts
    assert all(gateway.get(src).status_code == 200 for src in scripts)
    for operator_page in ("readyz", "metrics", "admin/login/"):
        assert gateway.get(f"/{service}/{operator_page}").status_code == 404


@pytest.mark.parametrize("service", SERVICES)
def test_operator_pages_load_through_the_operator_listener(
    stack: Stack, operator: httpx.Client, service: str
) -> None:
    assert operator.get(f"/{service}/readyz").status_code == 200
    assert b"# TYPE" in operator.get(f"/{service}/metrics").content

    login_page = operator.get(f"/{service}/admin/login/")
    assert login_page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)
    assert token is not None
    signed_in = operator.post(
        f"/{service}/admin/login/?next=/{service}/admin/",
        data={
            "username": "admin",
            "password": stack.env["ADMIN_PASSWORD"],
            "csrfmiddlewaretoken": token.group(1),
        },
        headers={"referer": f"{stack.operator_url}/{service}/admin/login/"},
        follow_redirects=True,
    )
    assert signed_in.status_code == 200
    assert "Log out" in signed_in.text or "logout" in signed_in.text
    css = operator.get(f"/{service}/static/admin/css/base.css")
    assert css.status_code == 200


def _pid(stack: Stack, program: str) -> int:
    match = re.search(rf"^{program}\s+RUNNING\s+pid (\d+)", stack.supervisorctl("status"), re.M)
    assert match is not None, stack.supervisorctl("status")
    return int(match.group(1))


def test_a_killed_process_is_restarted(
    stack: Stack, gateway: httpx.Client, operator: httpx.Client
) -> None:
    before = _pid(stack, "order-web")

    os.kill(before, signal.SIGKILL)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = stack.supervisorctl("status")
        if re.search(r"^order-web\s+RUNNING", status, re.M) and _pid(stack, "order-web") != before:
            try:
                if operator.get("/order/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    assert _pid(stack, "order-web") != before
    assert gateway.get("/api/v1/menu").status_code == 200
