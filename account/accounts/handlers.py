"""Messages the account service handles: one table, message type → function."""

from __future__ import annotations

from typing import Any

from account.accounts.services import account_debit, account_open, account_refund
from common.inbox.handlers import HandlerTable
from common.messaging.contract import AccountMovement, CustomerRegistered
from common.messaging.envelope import Envelope


def on_customer_registered(message: Envelope, payload: CustomerRegistered) -> dict[str, Any] | None:
    account_open(customer_id=payload.customer_id)
    return None


def on_debit(message: Envelope, payload: AccountMovement) -> dict[str, Any] | None:
    posted = account_debit(
        customer_id=payload.customer_id, order_id=payload.order_id, amount=payload.amount
    )
    return {"entry_id": posted.entry.id, "amount": -posted.entry.amount, "balance": posted.balance}


def on_refund(message: Envelope, payload: AccountMovement) -> dict[str, Any] | None:
    posted = account_refund(customer_id=payload.customer_id, order_id=payload.order_id)
    return {"refunded": posted.entry.amount if posted else 0}


HANDLERS: HandlerTable = {
    "customer.registered": on_customer_registered,
    "account.debit": on_debit,
    "account.refund": on_refund,
}
