"""Account API: deposits, balances, the ledger, and Idempotency-Key on deposits."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from rest_framework.test import APIClient

from account.accounts.models import Account, LedgerEntry
from account.accounts.services import account_deposit, account_open
from common.testing import OPERATOR

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer_id() -> uuid.UUID:
    return account_open(customer_id=uuid.uuid4()).customer_id


def deposit(api: APIClient, customer_id: uuid.UUID, amount: object, key: str | None = None) -> Any:
    headers: dict[str, Any] = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post(
        f"/api/v1/accounts/{customer_id}/deposits", {"amount": amount}, format="json", **headers
    )


def test_new_account_has_zero_yen(api: APIClient, customer_id: uuid.UUID) -> None:
    body = api.get(f"/api/v1/accounts/{customer_id}").json()

    assert body["customer_id"] == str(customer_id)
    assert (body["balance"], body["currency"]) == (0, "JPY")
    assert body["updated_at"].endswith("Z")


def test_unknown_account_is_404(api: APIClient) -> None:
    for path in ("", "/entries"):
        response = api.get(f"/api/v1/accounts/{uuid.uuid4()}{path}")
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert deposit(api, uuid.uuid4(), 100).status_code == 404


def test_deposit_raises_the_balance_and_appends_an_entry(
    api: APIClient, customer_id: uuid.UUID
) -> None:
    first = deposit(api, customer_id, 1000)
    second = deposit(api, customer_id, 250)

    assert first.status_code == 201
    assert set(first.json()) == {"entry_id", "customer_id", "amount", "balance"}
    assert (first.json()["amount"], first.json()["balance"]) == (1000, 1000)
    assert second.json()["balance"] == 1250
    assert api.get(f"/api/v1/accounts/{customer_id}").json()["balance"] == 1250
    entries = api.get(f"/api/v1/accounts/{customer_id}/entries").json()
    assert entries["count"] == 2
    assert [e["amount"] for e in entries["results"]] == [250, 1000]
    assert entries["results"][0] == {
        "id": second.json()["entry_id"],
        "kind": "deposit",
        "amount": 250,
        "order_id": None,
        "created_at": entries["results"][0]["created_at"],
    }


@pytest.mark.parametrize("amount", [0, -5, 1_000_000_001, "abc", 1.5, None, True, "1e3"])
def test_out_of_range_or_wrong_type_amount_is_400(
    api: APIClient, customer_id: uuid.UUID, amount: object
) -> None:
    response = deposit(api, customer_id, amount)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert LedgerEntry.objects.count() == 0


def test_largest_deposit_is_accepted(api: APIClient, customer_id: uuid.UUID) -> None:
    assert deposit(api, customer_id, 1_000_000_000).json()["balance"] == 1_000_000_000


def test_database_refuses_a_negative_balance(customer_id: uuid.UUID) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=customer_id).update(balance=-1)


def test_same_key_same_body_replays_without_a_second_entry(
    api: APIClient, customer_id: uuid.UUID
) -> None:
    first = deposit(api, customer_id, 500, key="dep-1")
    replay = deposit(api, customer_id, 500, key="dep-1")

    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert Account.objects.get(pk=customer_id).balance == 500
    assert LedgerEntry.objects.count() == 1


def test_same_key_other_body_is_422(api: APIClient, customer_id: uuid.UUID) -> None:
    deposit(api, customer_id, 500, key="dep-1")

    response = deposit(api, customer_id, 600, key="dep-1")

    assert (response.status_code, response.json()["code"]) == (422, "idempotency_key_reused")
    assert Account.objects.get(pk=customer_id).balance == 500


def test_a_failed_request_does_not_burn_its_key(api: APIClient, customer_id: uuid.UUID) -> None:
    assert deposit(api, customer_id, -1, key="dep-2").status_code == 400

    assert deposit(api, customer_id, 700, key="dep-2").status_code == 201


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_invalid_key_is_400(api: APIClient, customer_id: uuid.UUID, key: str) -> None:
    response = deposit(api, customer_id, 1, key=key)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_idempotency_key")


def test_key_of_255_characters_is_accepted(api: APIClient, customer_id: uuid.UUID) -> None:
    assert deposit(api, customer_id, 1, key="k" * 255).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_make_one_deposit(
    customer_id: uuid.UUID, as_customer: Callable[[uuid.UUID], APIClient]
) -> None:
    def attempt(_: int) -> tuple[int, object]:
        try:
            response = deposit(as_customer(customer_id), customer_id, 300, key="same-key")
            return response.status_code, response.json()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(attempt, range(20)))

    assert {code for code, _ in results} == {201}
    assert all(body == results[0][1] for _, body in results)
    assert Account.objects.get(pk=customer_id).balance == 300
    assert LedgerEntry.objects.filter(account_id=customer_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_deposits_lose_no_update(customer_id: uuid.UUID) -> None:
    def attempt(_: int) -> None:
        try:
            account_deposit(actor=OPERATOR, customer_id=customer_id, amount=10)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(attempt, range(50)))

    assert Account.objects.get(pk=customer_id).balance == 500
