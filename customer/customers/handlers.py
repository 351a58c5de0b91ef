"""Messages the customer service handles: one table, message type → function."""

from __future__ import annotations

from typing import Any

from common.inbox.handlers import HandlerTable
from common.messaging.contract import CustomerVerify
from common.messaging.envelope import Envelope
from customer.customers.services import customer_verify


def on_verify(message: Envelope, payload: CustomerVerify) -> dict[str, Any] | None:
    customer = customer_verify(customer_id=payload.customer_id)
    return {"customer_id": str(customer.id)}


HANDLERS: HandlerTable = {
    "customer.verify": on_verify,
}
