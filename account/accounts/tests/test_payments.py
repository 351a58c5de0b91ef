"""Debits and refunds of orders: once each, never below zero, never a charge after a refund."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from account.accounts.models import Account, LedgerEntry, OrderPayment
from account.accounts.services import account_debit, account_deposit, account_open, account_refund
from common.api.errors import BusinessError
from common.testing import OPERATOR

pytestmark = pytest.mark.django_db


def funded(amount: int) -> uuid.UUID:
    customer_id = account_open(customer_id=uuid.uuid4()).customer_id
    account_deposit(actor=OPERATOR, customer_id=customer_id, amount=amount)
    return customer_id


def balance(customer_id: uuid.UUID) -> int:
    return Account.objects.get(pk=customer_id).balance


def test_an_order_is_charged_once() -> None:
    customer_id, order_id = funded(1000), uuid.uuid4()

    first = account_debit(customer_id=customer_id, order_id=order_id, amount=300)
    again = account_debit(customer_id=customer_id, order_id=order_id, amount=300)

    assert again.entry.id == first.entry.id
    assert balance(customer_id) == 700
    assert first.entry.amount == -300


def test_insufficient_funds_changes_nothing() -> None:
    customer_id = funded(100)

    with pytest.raises(BusinessError) as refused:
        account_debit(customer_id=customer_id, order_id=uuid.uuid4(), amount=101)

    assert refused.value.code == "insufficient_funds"
    assert balance(customer_id) == 100
    assert OrderPayment.objects.count() == 0


def test_an_account_not_yet_opened_has_nothing_to_debit() -> None:
    with pytest.raises(BusinessError) as refused:
        account_debit(customer_id=uuid.uuid4(), order_id=uuid.uuid4(), amount=1)

    assert refused.value.code == "insufficient_funds"


def test_a_refund_gives_back_the_charge_once() -> None:
    customer_id, order_id = funded(1000), uuid.uuid4()
    account_debit(customer_id=customer_id, order_id=order_id, amount=300)

    refund = account_refund(customer_id=customer_id, order_id=order_id)
    again = account_refund(customer_id=customer_id, order_id=order_id)

    assert refund is not None and refund.entry.amount == 300
    assert again is None
    assert balance(customer_id) == 1000
    assert LedgerEntry.objects.filter(kind="refund").count() == 1


def test_a_refund_naming_another_customer_is_refused_and_moves_nothing() -> None:
    victim, attacker, order_id = funded(1000), funded(1), uuid.uuid4()
    account_debit(customer_id=victim, order_id=order_id, amount=300)

    with pytest.raises(BusinessError) as refused:
        account_refund(customer_id=attacker, order_id=order_id)

    assert refused.value.code == "customer_mismatch"
    assert (balance(victim), balance(attacker)) == (700, 1)
    assert OrderPayment.objects.get(pk=order_id).state == "charged"
    refund = account_refund(customer_id=victim, order_id=order_id)  # the genuine one still works
    assert refund is not None and balance(victim) == 1000


def test_a_debit_of_an_order_charged_to_another_customer_is_refused() -> None:
    payer, other, order_id = funded(1000), funded(1000), uuid.uuid4()
    account_debit(customer_id=payer, order_id=order_id, amount=300)

    with pytest.raises(BusinessError) as refused:
        account_debit(customer_id=other, order_id=order_id, amount=300)

    assert refused.value.code == "customer_mismatch"
    assert (balance(payer), balance(other)) == (700, 1000)


def test_a_refund_before_any_charge_voids_the_order_against_a_late_debit() -> None:
    customer_id, order_id = funded(1000), uuid.uuid4()

    assert account_refund(customer_id=customer_id, order_id=order_id) is None
    with pytest.raises(BusinessError) as refused:
        account_debit(customer_id=customer_id, order_id=order_id, amount=300)

    assert refused.value.code == "order_closed"
    assert balance(customer_id) == 1000


@pytest.mark.django_db(transaction=True)
def test_500_concurrent_debits_against_a_balance_for_100_let_exactly_100_through() -> None:
    customer_id = funded(100 * 50)

    def debit(_: int) -> bool:
        try:
            account_debit(customer_id=customer_id, order_id=uuid.uuid4(), amount=50)
            return True
        except BusinessError:
            return False
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(debit, range(500)))

    assert outcomes.count(True) == 100
    assert balance(customer_id) == 0
    assert LedgerEntry.objects.filter(kind="charge").count() == 100
