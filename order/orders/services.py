"""Write use-cases of the order service. Order states change only here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from common import clock
from common.api.errors import BusinessError
from common.transactions import locked, use_case_atomic
from order.orders.models import MenuItem, Order, OrderLine, UndoneCancellation


@dataclass(frozen=True)
class LineRequest:
    menu_item_id: int
    quantity: int


def order_create_pending(
    *,
    order_id: uuid.UUID,
    customer_id: uuid.UUID,
    items: Sequence[LineRequest],
    saga_id: uuid.UUID | None = None,
) -> Order:
    """Create the order as ``pending`` with prices from the menu.

    Idempotent on ``order_id``: creating it again returns the order as it is (an order of
    another customer under that id is refused). An item not on the menu stores the order as
    ``rejected`` with reason ``unknown_menu_item``, so the customer can still see what was
    refused and why.
    """
    with use_case_atomic():
        existing = locked(Order, order_id)
        if existing is not None:
            _check_owner(existing, customer_id)
            return existing
        menu = MenuItem.objects.in_bulk({line.menu_item_id for line in items})
        known = all(
            line.menu_item_id in menu and menu[line.menu_item_id].available for line in items
        )
        lines = [
            OrderLine(
                order_id=order_id,
                menu_item_id=line.menu_item_id,
                name=menu[line.menu_item_id].name,
                quantity=line.quantity,
                unit_price=menu[line.menu_item_id].price,
            )
            for line in items
            if line.menu_item_id in menu
        ]
        order = Order.objects.create(
            id=order_id,
            customer_id=customer_id,
            state=Order.State.PENDING if known else Order.State.REJECTED,
            reason=None if known else "unknown_menu_item",
            saga_id=saga_id if known else None,
            total=sum(line.quantity * line.unit_price for line in lines) if known else 0,
        )
        OrderLine.objects.bulk_create(lines)
    return order


def _locked(order_id: uuid.UUID) -> Order | None:
    return locked(Order, order_id)


def _move(
    order: Order, state: Order.State, *, saga_id: uuid.UUID | None, reason: str | None = None
) -> Order:
    order.state, order.saga_id, order.updated_at = state, saga_id, clock.now()
    fields = ["state", "saga_id", "updated_at"]
    if reason is not None:
        order.reason = reason
        fields.append("reason")
    order.save(update_fields=fields)
    return order


def _refuse(code: str, order_id: uuid.UUID, state: str | None) -> BusinessError:
    return BusinessError(
        code, f"Order {order_id} is {state or 'unknown'}.", status=409, state=state
    )


def _check_owner(order: Order, customer_id: uuid.UUID) -> None:
    """A command acts on this service's record of whose order it is, whatever it claims."""
    if order.customer_id != customer_id:
        raise BusinessError(
            "customer_mismatch",
            f"Order {order.id} is not an order of customer {customer_id}.",
            status=409,
        )


def _check_saga(order: Order, saga_id: uuid.UUID | None) -> None:
    """A pending order is semantically locked by the saga that created it: only that saga may
    approve or reject it."""
    if order.saga_id is not None and order.saga_id != saga_id:
        raise BusinessError(
            "order_locked", f"Order {order.id} belongs to another saga.", status=409
        )


# Only an approved order can be (or have been) cancelled: each of these states says it was approved.
APPROVED_ONCE = frozenset({Order.State.APPROVED, Order.State.CANCEL_PENDING, Order.State.CANCELLED})


def order_approve(*, order_id: uuid.UUID, saga_id: uuid.UUID | None) -> Order:
    """pending → approved, by the saga that created it. Approving it again answers the same,
    also once a cancellation has taken the order further (a late try of the approval must not
    fail the checkout for good)."""
    with use_case_atomic():
        order = _locked(order_id)
        if order is not None and order.state in APPROVED_ONCE:
            return order
        if order is None or order.state != Order.State.PENDING:
            raise _refuse("order_not_pending", order_id, order.state if order else None)
        _check_saga(order, saga_id)
        return _move(order, Order.State.APPROVED, saga_id=None)


def order_reject(
    *, order_id: uuid.UUID, customer_id: uuid.UUID, reason: str, saga_id: uuid.UUID | None
) -> Order:
    """pending → rejected, by the saga that created it. An order never created (its creation
    timed out) is stored rejected for the customer the command names (there is no record of
    its own yet), so a late creation finds it and changes nothing."""
    with use_case_atomic():
        order = _locked(order_id)
        if order is None:
            return Order.objects.create(
                id=order_id, customer_id=customer_id, state=Order.State.REJECTED, reason=reason
            )
        _check_owner(order, customer_id)
        if order.state == Order.State.REJECTED:
            return order
        if order.state != Order.State.PENDING:
            raise _refuse("order_not_rejectable", order_id, order.state)
        _check_saga(order, saga_id)
        return _move(order, Order.State.REJECTED, saga_id=None, reason=reason)


def order_begin_cancel(*, order_id: uuid.UUID, saga_id: uuid.UUID) -> Order:
    """approved → cancel_pending, locked by this cancellation; nothing else may change it now."""
    with use_case_atomic():
        order = _locked(order_id)
        if (
            order is not None
            and order.state == Order.State.CANCEL_PENDING
            and order.saga_id == saga_id
        ):
            return order
        if order is None or order.state != Order.State.APPROVED:
            raise _refuse("order_not_cancellable", order_id, order.state if order else None)
        if UndoneCancellation.objects.filter(pk=saga_id).exists():  # a late try of it
            raise _refuse("order_not_cancellable", order_id, order.state)
        return _move(order, Order.State.CANCEL_PENDING, saga_id=saga_id)


def _cancel_step(order_id: uuid.UUID, saga_id: uuid.UUID, *, to: Order.State) -> Order:
    with use_case_atomic():
        order = _locked(order_id)
        if order is not None and order.state == to and order.saga_id == saga_id:
            return order
        if order is None or order.state != Order.State.CANCEL_PENDING or order.saga_id != saga_id:
            raise _refuse("order_not_cancel_pending", order_id, order.state if order else None)
        return _move(order, to, saga_id=saga_id)


def order_confirm_cancel(*, order_id: uuid.UUID, saga_id: uuid.UUID) -> Order:
    """cancel_pending (locked by this saga) → cancelled."""
    return _cancel_step(order_id, saga_id, to=Order.State.CANCELLED)


def order_undo_cancel(*, order_id: uuid.UUID, saga_id: uuid.UUID) -> Order | None:
    """cancel_pending (locked by this saga) → approved again; an order this saga does not hold
    is left as it is (its begin_cancel never took effect). Either way the saga is recorded as
    undone, so that a try of its begin_cancel still on its way cannot lock the order later."""
    with use_case_atomic():
        order = _locked(order_id)
        UndoneCancellation.objects.get_or_create(saga_id=saga_id, defaults={"order_id": order_id})
        if (
            order is not None
            and order.state == Order.State.CANCEL_PENDING
            and order.saga_id == saga_id
        ):
            return _move(order, Order.State.APPROVED, saga_id=saga_id)
        return order
