"""Checkout and cancellation API: 202 with Location, validation, Idempotency-Key."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from orchestrator.sagas.models import Saga

pytestmark = pytest.mark.django_db

ITEMS = [{"menu_item_id": 1, "quantity": 2}]


def checkout(api: APIClient, body: Any, key: str | None = None) -> Any:
    headers: dict[str, Any] = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post("/api/v1/checkouts", body, format="json", **headers)


def test_a_checkout_is_accepted_with_its_order_id_and_location(api: APIClient) -> None:
    customer_id = str(uuid.uuid4())

    response = checkout(api, {"customer_id": customer_id, "items": ITEMS})

    assert response.status_code == 202
    body = response.json()
    assert response["Location"] == f"/api/v1/checkouts/{body['id']}"
    assert set(body) == {
        "id",
        "order_id",
        "customer_id",
        "state",
        "reason",
        "steps",
        "created_at",
        "updated_at",
    }
    assert (body["customer_id"], body["state"], body["reason"]) == (customer_id, "running", None)
    assert uuid.UUID(body["order_id"])
    assert [s["name"] for s in body["steps"]] == [
        "create_order",
        "verify_customer",
        "debit",
        "approve_order",
    ]
    assert set(body["steps"][0]) == {"name", "state", "attempts", "started_at", "finished_at"}
    assert api.get(response["Location"]).json()["id"] == body["id"]


@pytest.mark.parametrize(
    "body",
    [
        {"customer_id": "nope", "items": ITEMS},
        {"items": ITEMS},
        {"customer_id": str(uuid.uuid4()), "items": []},
        {"customer_id": str(uuid.uuid4()), "items": [{"menu_item_id": 1, "quantity": 1}] * 21},
        {"customer_id": str(uuid.uuid4()), "items": [{"menu_item_id": 1, "quantity": 0}]},
        {"customer_id": str(uuid.uuid4()), "items": [{"menu_item_id": 1, "quantity": 100}]},
        {"customer_id": str(uuid.uuid4()), "items": [{"menu_item_id": "x", "quantity": 1}]},
        {"customer_id": str(uuid.uuid4()), "items": [{"menu_item_id": 2**40, "quantity": 1}]},
        {"customer_id": str(uuid.uuid4()), "items": [{"quantity": 1}]},
        {"customer_id": str(uuid.uuid4()), "items": {"menu_item_id": 1}},
        [1, 2],
    ],
)
def test_invalid_checkouts_are_400_and_start_nothing(api: APIClient, body: Any) -> None:
    response = checkout(api, body)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert Saga.objects.count() == 0


def test_twenty_items_of_ninety_nine_are_accepted(api: APIClient) -> None:
    items = [{"menu_item_id": n + 1, "quantity": 99} for n in range(20)]

    assert checkout(api, {"customer_id": str(uuid.uuid4()), "items": items}).status_code == 202


def test_unknown_ids_are_404(api: APIClient) -> None:
    cancellation = api.post("/api/v1/cancellations", {"order_id": str(uuid.uuid4())}, format="json")

    assert api.get(f"/api/v1/checkouts/{uuid.uuid4()}").status_code == 404
    assert api.get(f"/api/v1/cancellations/{uuid.uuid4()}").status_code == 404
    assert (cancellation.status_code, cancellation.json()["code"]) == (404, "not_found")


def test_a_checkout_id_is_not_a_cancellation(api: APIClient) -> None:
    checkout_id = checkout(api, {"customer_id": str(uuid.uuid4()), "items": ITEMS}).json()["id"]

    assert api.get(f"/api/v1/cancellations/{checkout_id}").status_code == 404


def test_a_cancellation_is_accepted_for_a_placed_order(api: APIClient) -> None:
    order_id = checkout(api, {"customer_id": str(uuid.uuid4()), "items": ITEMS}).json()["order_id"]

    response = api.post("/api/v1/cancellations", {"order_id": order_id}, format="json")

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "order_id", "state", "reason", "steps", "created_at", "updated_at"}
    assert response["Location"] == f"/api/v1/cancellations/{body['id']}"
    assert [s["name"] for s in body["steps"]] == ["begin_cancel", "refund", "confirm_cancel"]


def test_idempotency_key_replays_the_first_checkout(api: APIClient) -> None:
    body = {"customer_id": str(uuid.uuid4()), "items": ITEMS}

    first = checkout(api, body, key="co-1")
    second = checkout(api, body, key="co-1")
    other = checkout(api, {**body, "items": [{"menu_item_id": 2, "quantity": 1}]}, key="co-1")

    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second["Location"] == first["Location"]
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert Saga.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_checkouts_with_one_key_start_one_saga(
    as_customer: Callable[[uuid.UUID], APIClient],
) -> None:
    customer_id = uuid.uuid4()
    body = {"customer_id": str(customer_id), "items": ITEMS}

    def attempt(_: int) -> tuple[int, str]:
        try:
            response = checkout(as_customer(customer_id), body, key="same")
            return response.status_code, response.json()["id"]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(16)))

    assert {code for code, _ in results} == {202}
    assert len({saga_id for _, saga_id in results}) == 1
    assert Saga.objects.count() == 1


def test_the_hand_built_body_is_what_the_serializers_describe(api: APIClient) -> None:
    from orchestrator.sagas.apis import CancellationOutputSerializer, CheckoutOutputSerializer

    checkout_id = checkout(api, {"customer_id": str(uuid.uuid4()), "items": ITEMS}).json()["id"]
    saga = Saga.objects.get(pk=checkout_id)

    described = CheckoutOutputSerializer(saga).data
    built = api.get(f"/api/v1/checkouts/{checkout_id}").json()

    assert built == {
        **described,
        "id": str(described["id"]),
        "order_id": str(described["order_id"]),
        "customer_id": str(described["customer_id"]),
    }
    assert set(CancellationOutputSerializer.Meta.fields) < set(built)
