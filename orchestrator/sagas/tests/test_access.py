"""Who may start and see checkouts and cancellations (DESIGN.md §7 "Identity and access")."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from common.api.errors import BusinessError
from common.auth.principal import Principal
from common.testing import OPERATOR
from orchestrator.sagas.models import Saga
from orchestrator.sagas.services import checkout_start

pytestmark = pytest.mark.django_db

ITEMS = [{"menu_item_id": 1, "quantity": 1}]
Clients = Callable[[uuid.UUID], APIClient]


def checkout(client: APIClient, body: dict[str, Any], key: str | None = None) -> Any:
    headers: dict[str, Any] = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post("/api/v1/checkouts", body, format="json", **headers)


def test_a_customer_checks_out_for_themselves_without_naming_themselves(
    as_customer: Clients,
) -> None:
    me = uuid.uuid4()

    response = checkout(as_customer(me), {"items": ITEMS})

    assert response.status_code == 202
    assert response.json()["customer_id"] == str(me)


def test_a_checkout_for_another_customer_is_403_and_starts_nothing(as_customer: Clients) -> None:
    response = checkout(
        as_customer(uuid.uuid4()), {"customer_id": str(uuid.uuid4()), "items": ITEMS}
    )

    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    assert Saga.objects.count() == 0


def test_an_operator_must_name_the_customer(api: APIClient) -> None:
    missing = checkout(api, {"items": ITEMS})
    named = checkout(api, {"customer_id": str(uuid.uuid4()), "items": ITEMS})

    assert (missing.status_code, missing.json()["code"]) == (400, "validation_error")
    assert named.status_code == 202


def test_another_customers_checkout_and_cancellation_are_404(
    as_customer: Clients, api: APIClient
) -> None:
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    placed = checkout(as_customer(owner), {"items": ITEMS}).json()
    cancelled = api.post(
        "/api/v1/cancellations", {"order_id": placed["order_id"]}, format="json"
    ).json()
    them = as_customer(stranger)

    for path in (f"/api/v1/checkouts/{placed['id']}", f"/api/v1/cancellations/{cancelled['id']}"):
        response = them.get(path)
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
        assert as_customer(owner).get(path).status_code == 200
    refused = them.post("/api/v1/cancellations", {"order_id": placed["order_id"]}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (404, "not_found")
    assert Saga.objects.filter(type=Saga.Type.CANCEL_ORDER).count() == 1


def test_too_many_sagas_in_flight_is_429_with_retry_after(
    as_customer: Clients, settings: Any
) -> None:
    settings.SAGAS_IN_FLIGHT_PER_CUSTOMER = 2
    me = as_customer(uuid.uuid4())

    codes = [checkout(me, {"items": ITEMS}, key=f"k{n}").status_code for n in range(3)]
    refused = checkout(me, {"items": ITEMS}, key="k2")
    other = checkout(as_customer(uuid.uuid4()), {"items": ITEMS})

    assert codes == [202, 202, 429]
    assert (refused.json()["code"], refused["Retry-After"]) == ("too_many_sagas", "1")
    assert other.status_code == 202
    Saga.objects.filter(state="running").update(state="completed")
    assert checkout(me, {"items": ITEMS}, key="k2").status_code == 202  # the key was not used up


@pytest.mark.django_db(transaction=True)
def test_one_idempotency_key_of_two_customers_is_two_keys(as_customer: Clients) -> None:
    customers = [uuid.uuid4(), uuid.uuid4()]

    def attempt(n: int) -> dict[str, Any]:
        try:
            response = checkout(as_customer(customers[n % 2]), {"items": ITEMS}, key="shared")
            assert response.status_code == 202
            body: dict[str, Any] = response.json()
            return body
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(attempt, range(16)))

    by_customer = {b["customer_id"]: b["id"] for b in bodies}
    assert set(by_customer) == {str(c) for c in customers}
    for body in bodies:
        assert body["id"] == by_customer[body["customer_id"]]  # each saw only their own
    assert Saga.objects.count() == 2


def test_checkout_start_checks_the_caller_too() -> None:
    with pytest.raises(BusinessError) as refused:
        checkout_start(
            actor=Principal.for_customer(uuid.uuid4()), customer_id=uuid.uuid4(), items=ITEMS
        )
    assert (refused.value.code, refused.value.status) == ("forbidden", 403)
    assert checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS).state == "running"
