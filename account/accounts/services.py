"""Write use-cases of the account service. Balances change only here, one ledger entry each."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from account.accounts.models import Account, LedgerEntry, OrderPayment
from common import clock
from common.api.errors import BusinessError, NotFoundError
from common.transactions import locked, use_case_atomic


@dataclass(frozen=True)
class Posted:
    entry: LedgerEntry
    balance: int


def account_open(*, customer_id: uuid.UUID) -> Account:
    """Open the customer's account; opening it again changes nothing."""
    with use_case_atomic():
        account, _ = Account.objects.get_or_create(customer_id=customer_id)
    return account


def _locked_account(customer_id: uuid.UUID) -> Account:
    account = locked(Account, customer_id)
    if account is None:
        raise NotFoundError("Account", customer_id)
    return account


def _post(
    account: Account, *, kind: LedgerEntry.Kind, amount: int, order_id: uuid.UUID | None
) -> Posted:
    now = clock.now()
    account.balance += amount
    account.updated_at = now
    account.save(update_fields=["balance", "updated_at"])
    entry = LedgerEntry.objects.create(
        account=account, kind=kind, amount=amount, order_id=order_id, created_at=now
    )
    return Posted(entry=entry, balance=account.balance)


def account_deposit(*, customer_id: uuid.UUID, amount: int) -> Posted:
    with use_case_atomic():
        account = _locked_account(customer_id)
        return _post(account, kind=LedgerEntry.Kind.DEPOSIT, amount=amount, order_id=None)


def account_debit(*, customer_id: uuid.UUID, order_id: uuid.UUID, amount: int) -> Posted:
    """Charge an order once. Charging it again returns the first charge; an order whose
    payment was refunded or voided is never charged."""
    with use_case_atomic():
        # The account row lock serialises every movement of this balance (and of its orders).
        account = locked(Account, customer_id)
        payment = locked(OrderPayment, order_id)
        if payment is not None:
            if payment.state == OrderPayment.State.CHARGED and account is not None:
                entry = LedgerEntry.objects.get(order_id=order_id, kind=LedgerEntry.Kind.CHARGE)
                return Posted(entry=entry, balance=account.balance)
            raise BusinessError(
                "order_closed", f"Order {order_id} was already settled.", status=409
            )
        if account is None or account.balance < amount:
            raise BusinessError(
                "insufficient_funds",
                f"The balance does not cover {amount} JPY.",
                status=409,
                balance=account.balance if account else 0,
                required=amount,
            )
        posted = _post(account, kind=LedgerEntry.Kind.CHARGE, amount=-amount, order_id=order_id)
        OrderPayment.objects.create(
            order_id=order_id,
            customer_id=customer_id,
            amount=amount,
            state=OrderPayment.State.CHARGED,
        )
        return posted


def account_refund(*, customer_id: uuid.UUID, order_id: uuid.UUID) -> Posted | None:
    """Give back what the order was charged, once. With no charge yet, void the order so a
    late debit cannot charge it. Returns the refund entry, or None if nothing moved."""
    with use_case_atomic():
        account = locked(Account, customer_id)
        payment = locked(OrderPayment, order_id)
        if payment is None:
            OrderPayment.objects.create(
                order_id=order_id,
                customer_id=customer_id,
                amount=0,
                state=OrderPayment.State.VOIDED,
            )
            return None
        if payment.state != OrderPayment.State.CHARGED or account is None:
            return None
        posted = _post(
            account, kind=LedgerEntry.Kind.REFUND, amount=payment.amount, order_id=order_id
        )
        payment.state = OrderPayment.State.REFUNDED
        payment.updated_at = clock.now()
        payment.save(update_fields=["state", "updated_at"])
        return posted
