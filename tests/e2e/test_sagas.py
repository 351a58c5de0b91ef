"""Checkouts and cancellations end to end: every real process, through the gateway only."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.cafe import Cafe
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def cafe(gateway: httpx.Client) -> Cafe:
    return Cafe(gateway)


def menu(cafe: Cafe) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in cafe.http.get("/api/v1/menu").json()}


def test_an_approved_checkout_charges_its_total_once(cafe: Cafe) -> None:
    items = menu(cafe)
    latte, cake = items["Café Latte"], items["Cheesecake"]
    customer = cafe.customer(deposit=5000)

    done = cafe.wait(
        cafe.checkout(
            customer,
            [
                {"menu_item_id": latte["id"], "quantity": 2},
                {"menu_item_id": cake["id"], "quantity": 1},
            ],
        )
    )

    total = 2 * latte["price"] + cake["price"]
    assert (done["state"], done["reason"]) == ("completed", None)
    assert [s["state"] for s in done["steps"]] == ["succeeded"] * 4
    order = cafe.order(done["order_id"])
    assert order is not None and (order["state"], order["total"]) == ("approved", total)
    assert cafe.balance(customer) == 5000 - total
    cafe.assert_outcomes()


def test_insufficient_funds_is_compensated_with_no_net_charge(cafe: Cafe) -> None:
    customer = cafe.customer(deposit=100)

    done = cafe.wait(cafe.checkout(customer, [{"menu_item_id": 1, "quantity": 1}]))

    assert (done["state"], done["reason"]) == ("rejected", "insufficient_funds")
    order = cafe.order(done["order_id"])
    assert order is not None and order["state"] == "rejected"
    assert cafe.balance(customer) == 100
    cafe.assert_outcomes()


def test_unknown_customer_is_rejected(cafe: Cafe) -> None:
    done = cafe.wait(cafe.checkout(str(uuid.uuid4()), [{"menu_item_id": 1, "quantity": 1}]))

    assert (done["state"], done["reason"]) == ("rejected", "unknown_customer")
    order = cafe.order(done["order_id"])
    assert order is not None and order["state"] == "rejected"


def test_blocked_customer_is_rejected(cafe: Cafe) -> None:
    customer = cafe.customer(deposit=5000)
    assert cafe.http.post(f"/api/v1/customers/{customer}/block").json()["status"] == "blocked"

    done = cafe.wait(cafe.checkout(customer, [{"menu_item_id": 1, "quantity": 1}]))

    assert (done["state"], done["reason"]) == ("rejected", "customer_blocked")
    assert cafe.balance(customer) == 5000
    cafe.assert_outcomes()


def test_unknown_menu_item_is_rejected_and_the_order_kept_as_rejected(cafe: Cafe) -> None:
    customer = cafe.customer(deposit=5000)

    done = cafe.wait(
        cafe.checkout(
            customer, [{"menu_item_id": 1, "quantity": 1}, {"menu_item_id": 999_999, "quantity": 1}]
        )
    )

    assert (done["state"], done["reason"]) == ("rejected", "unknown_menu_item")
    order = cafe.order(done["order_id"])
    assert order is not None and (order["state"], order["reason"]) == (
        "rejected",
        "unknown_menu_item",
    )
    cafe.assert_outcomes()


def test_cancelling_an_approved_order_refunds_it(cafe: Cafe) -> None:
    customer = cafe.customer(deposit=5000)
    placed = cafe.wait(cafe.checkout(customer, [{"menu_item_id": 2, "quantity": 1}]))
    assert placed["state"] == "completed"

    cancelled = cafe.wait(cafe.cancel(placed["order_id"]))

    assert (cancelled["state"], cancelled["reason"]) == ("completed", None)
    order = cafe.order(placed["order_id"])
    assert order is not None and order["state"] == "cancelled"
    assert cafe.balance(customer) == 5000
    refunds = [
        e for e in cafe.pages(f"/api/v1/accounts/{customer}/entries") if e["kind"] == "refund"
    ]
    assert [(r["amount"], r["order_id"]) for r in refunds] == [(order["total"], order["id"])]
    cafe.assert_outcomes()


def test_cancelling_a_rejected_order_is_not_possible(cafe: Cafe) -> None:
    customer = cafe.customer(deposit=0)
    placed = cafe.wait(cafe.checkout(customer, [{"menu_item_id": 1, "quantity": 1}]))
    assert placed["state"] == "rejected"

    cancelled = cafe.wait(cafe.cancel(placed["order_id"]))

    assert (cancelled["state"], cancelled["reason"]) == ("rejected", "order_not_cancellable")
    cafe.assert_outcomes()


def test_a_repeated_idempotency_key_places_one_order(cafe: Cafe) -> None:
    customer = cafe.customer(deposit=5000)
    items = [{"menu_item_id": 3, "quantity": 1}]

    first = cafe.checkout(customer, items, key="e2e-seq")
    second = cafe.checkout(customer, items, key="e2e-seq")
    reused = cafe.http.post(
        "/api/v1/checkouts",
        json={"customer_id": customer, "items": [{"menu_item_id": 4, "quantity": 1}]},
        headers={"Idempotency-Key": "e2e-seq", **cafe.as_customer(customer)},
    )

    assert second["id"] == first["id"]
    assert reused.status_code == 422
    with ThreadPoolExecutor(max_workers=10) as pool:
        concurrent = list(
            pool.map(
                lambda _: cafe.http.post(
                    "/api/v1/checkouts",
                    json={"customer_id": customer, "items": items},
                    headers={"Idempotency-Key": "e2e-concurrent", **cafe.as_customer(customer)},
                ).json()["id"],
                range(10),
            )
        )
    assert len(set(concurrent)) == 1
    cafe.checkouts.append({"id": concurrent[0], "customer_id": customer})
    cafe.wait_all()
    charges = [
        e for e in cafe.pages(f"/api/v1/accounts/{customer}/entries") if e["kind"] == "charge"
    ]
    assert len(charges) == 2
    cafe.assert_outcomes()


def test_100_concurrent_checkouts_against_one_account_never_overdraw(stack: Stack) -> None:
    with httpx.Client(
        base_url=stack.url, timeout=30, limits=httpx.Limits(max_connections=20)
    ) as http:
        cafe = Cafe(http)
        price = menu(cafe)["Espresso"]["price"]
        customer = cafe.customer(deposit=30 * price)

        with ThreadPoolExecutor(max_workers=20) as pool:
            list(
                pool.map(
                    lambda _: cafe.checkout(customer, [{"menu_item_id": 1, "quantity": 1}]),
                    range(100),
                )
            )
        finals = cafe.wait_all(timeout_s=180)

        states = [f["state"] for f in finals]
        assert states.count("completed") == 30
        assert states.count("rejected") == 70
        assert {f["reason"] for f in finals if f["state"] == "rejected"} == {"insufficient_funds"}
        assert cafe.balance(customer) == 0
        cafe.assert_outcomes()
