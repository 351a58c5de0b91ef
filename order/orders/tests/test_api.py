"""Order service API: the menu and reading orders."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from order.orders.models import MenuItem, Order
from order.orders.services import LineRequest, order_create_pending

pytestmark = pytest.mark.django_db


def test_default_menu_has_food_and_drinks(api: APIClient) -> None:
    menu = api.get("/api/v1/menu").json()

    assert len(menu) >= 6
    assert {item["kind"] for item in menu} == {"food", "drink"}
    assert all(set(item) == {"id", "name", "kind", "price"} for item in menu)
    assert all(isinstance(item["price"], int) and item["price"] > 0 for item in menu)


def test_order_is_readable_with_its_lines(api: APIClient) -> None:
    espresso, croissant = MenuItem.objects.order_by("id")[:2]
    customer_id = uuid.uuid4()
    order = order_create_pending(
        order_id=uuid.uuid4(),
        customer_id=customer_id,
        items=[LineRequest(espresso.id, 2), LineRequest(croissant.id, 1)],
    )

    body = api.get(f"/api/v1/orders/{order.id}").json()

    assert body["state"] == "pending" and body["reason"] is None
    assert body["total"] == 2 * espresso.price + croissant.price
    assert body["items"] == [
        {
            "menu_item_id": espresso.id,
            "name": espresso.name,
            "quantity": 2,
            "unit_price": espresso.price,
        },
        {
            "menu_item_id": croissant.id,
            "name": croissant.name,
            "quantity": 1,
            "unit_price": croissant.price,
        },
    ]
    assert set(body) == {
        "id",
        "customer_id",
        "items",
        "total",
        "state",
        "reason",
        "created_at",
        "updated_at",
    }


def test_orders_are_listed_per_customer(api: APIClient) -> None:
    item = MenuItem.objects.first()
    assert item is not None
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    for customer in (mine, mine, theirs):
        order_create_pending(
            order_id=uuid.uuid4(), customer_id=customer, items=[LineRequest(item.id, 1)]
        )

    listed = api.get(f"/api/v1/orders?customer_id={mine}").json()

    assert listed["count"] == 2
    assert {o["customer_id"] for o in listed["results"]} == {str(mine)}
    assert api.get("/api/v1/orders").json()["count"] == 3


def test_bad_customer_filter_is_400_and_unknown_order_404(api: APIClient) -> None:
    bad = api.get("/api/v1/orders?customer_id=nope")
    missing = api.get(f"/api/v1/orders/{uuid.uuid4()}")

    assert (bad.status_code, bad.json()["code"]) == (400, "validation_error")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


def test_creating_an_order_twice_keeps_the_first() -> None:
    item = MenuItem.objects.first()
    assert item is not None
    order_id, customer_id = uuid.uuid4(), uuid.uuid4()

    first = order_create_pending(
        order_id=order_id, customer_id=customer_id, items=[LineRequest(item.id, 1)]
    )
    again = order_create_pending(
        order_id=order_id, customer_id=customer_id, items=[LineRequest(item.id, 5)]
    )

    assert again.total == first.total == item.price
    assert Order.objects.count() == 1


def test_an_unknown_menu_item_stores_the_order_as_rejected() -> None:
    item = MenuItem.objects.first()
    assert item is not None

    order = order_create_pending(
        order_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        items=[LineRequest(item.id, 1), LineRequest(999_999, 1)],
    )

    assert (order.state, order.reason, order.total) == ("rejected", "unknown_menu_item", 0)
