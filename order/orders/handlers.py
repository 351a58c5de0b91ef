"""Messages the order service handles: one table, message type → function."""

from __future__ import annotations

import uuid
from typing import Any

from common.inbox.handlers import HandlerTable
from common.messaging.contract import OrderCreatePending, OrderRef, OrderReject, Reply
from common.messaging.envelope import Envelope
from order.orders.models import Order
from order.orders.services import (
    LineRequest,
    order_approve,
    order_begin_cancel,
    order_confirm_cancel,
    order_create_pending,
    order_reject,
    order_undo_cancel,
)


def _summary(order: Order) -> dict[str, Any]:
    return {
        "order_id": str(order.id),
        "state": order.state,
        "customer_id": str(order.customer_id),
        "total": order.total,
    }


def _saga(message: Envelope) -> uuid.UUID:
    if message.correlation.saga_id is None:
        raise ValueError(f"{message.type} {message.id} carries no saga id")
    return message.correlation.saga_id


def on_create_pending(message: Envelope, payload: OrderCreatePending) -> dict[str, Any] | Reply:
    order = order_create_pending(
        order_id=payload.order_id,
        customer_id=payload.customer_id,
        items=[LineRequest(line.menu_item_id, line.quantity) for line in payload.items],
        saga_id=message.correlation.saga_id,
    )
    if order.state == Order.State.REJECTED:
        # A failure whose effect stays: the order is kept as rejected, with its reason.
        return Reply(ok=False, reason=order.reason or "rejected", result=_summary(order))
    return _summary(order)


def on_approve(message: Envelope, payload: OrderRef) -> dict[str, Any]:
    return _summary(order_approve(order_id=payload.order_id, saga_id=message.correlation.saga_id))


def on_reject(message: Envelope, payload: OrderReject) -> dict[str, Any]:
    return _summary(
        order_reject(
            order_id=payload.order_id,
            customer_id=payload.customer_id,
            reason=payload.reason,
            saga_id=message.correlation.saga_id,
        )
    )


def on_begin_cancel(message: Envelope, payload: OrderRef) -> dict[str, Any]:
    return _summary(order_begin_cancel(order_id=payload.order_id, saga_id=_saga(message)))


def on_confirm_cancel(message: Envelope, payload: OrderRef) -> dict[str, Any]:
    return _summary(order_confirm_cancel(order_id=payload.order_id, saga_id=_saga(message)))


def on_undo_cancel(message: Envelope, payload: OrderRef) -> dict[str, Any]:
    order = order_undo_cancel(order_id=payload.order_id, saga_id=_saga(message))
    return _summary(order) if order else {"order_id": str(payload.order_id), "state": None}


HANDLERS: HandlerTable = {
    "order.create_pending": on_create_pending,
    "order.approve": on_approve,
    "order.reject": on_reject,
    "order.begin_cancel": on_begin_cancel,
    "order.confirm_cancel": on_confirm_cancel,
    "order.undo_cancel": on_undo_cancel,
}
