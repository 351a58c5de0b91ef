"""Write use-cases of the account service. Balances change only here, one ledger entry each."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from account.accounts.models import Account, LedgerEntry, OrderPayment
from common import clock
from common.api.errors import BusinessError, NotFoundError
from common.auth.principal import Principal
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


def account_deposit(*, actor: Principal, customer_id: uuid.UUID, amount: int) -> Posted:
    """Money in: into one's own account, or any account by an operator."""
    actor.require_owner(customer_id, what="Account", ident=customer_id)
    with use_case_atomic():
        account = _locked_account(customer_id)
        return _post(account, kind=LedgerEntry.Kind.DEPOSIT, amount=amount, order_id=None)


def _customer_mismatch(order_id: uuid.UUID, customer_id: uuid.UUID) -> BusinessError:
    return BusinessError(
        "customer_mismatch",
        f"Order {order_id} was not paid from the account of customer {customer_id}.",
        status=409,
    )


def _check_payer(payment: OrderPayment | None, customer_id: uuid.UUID) -> None:
    """A command acts on this service's own record of who paid, whatever customer it names."""
    if payment is not None and payment.customer_id != customer_id:
        raise _customer_mismatch(payment.order_id, customer_id)


def account_debit(*, customer_id: uuid.UUID, order_id: uuid.UUID, amount: int) -> Posted:
    """Charge an order once. Charging it again returns the first charge; an order whose
    payment was refunded or voided is never charged; an order already settled by another
    customer's account is refused."""
    with use_case_atomic():
        # The account row lock serialises every movement of this balance (and of its orders).
        account = locked(Account, customer_id)
        payment = locked(OrderPayment, order_id)
        _check_payer(payment, customer_id)
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
    """Give back what the order was charged, once, to the account it was charged to. With no
    charge yet, void the order so a late debit cannot charge it. Returns the refund entry, or
    None if nothing moved.

    A refund naming another customer than the one who paid is refused (``customer_mismatch``,
    a business failure: nothing moves, and the sender is told why).
    """
    with use_case_atomic():
        # Who paid is read first (it never changes once recorded), so the locks are taken in
        # the order every debit takes them: the account, then the payment.
        _check_payer(OrderPayment.objects.filter(pk=order_id).first(), customer_id)
        account = locked(Account, customer_id)
        payment = locked(OrderPayment, order_id)
        _check_payer(payment, customer_id)  # recorded meanwhile by a concurrent debit
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
