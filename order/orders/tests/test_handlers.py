"""The order service's commands: idempotent on the order, and the semantic lock of sagas."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from common.inbox.services import inbox_handle
from common.messaging.contract import OrderCreatePending, OrderLine, OrderRef, OrderReject, Payload
from common.messaging.envelope import Correlation, Envelope, new_command
from common.outbox.models import OutboxMessage
from order.orders.handlers import HANDLERS
from order.orders.models import MenuItem, Order

pytestmark = pytest.mark.django_db

# The place-order saga of these tests' orders, unless a test names another saga.
PLACING = uuid.uuid4()


def send(type_name: str, payload: Payload, saga_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Handle one command as the inbox does; returns the reply's payload."""
    command: Envelope = new_command(
        type_name,
        payload,
        source="orchestrator",
        correlation=Correlation(saga_id=saga_id or PLACING),
    )
    inbox_handle(command, payload, HANDLERS[type_name])
    reply = OutboxMessage.objects.get(
        type=f"{type_name}.reply", envelope__correlation__in_reply_to=str(command.id)
    )
    return dict(reply.envelope["payload"])


def placed(saga_id: uuid.UUID | None = None) -> uuid.UUID:
    item = MenuItem.objects.order_by("id").first()
    assert item is not None
    order_id = uuid.uuid4()
    reply = send(
        "order.create_pending",
        OrderCreatePending(
            order_id=order_id,
            customer_id=uuid.uuid4(),
            items=[OrderLine(menu_item_id=item.id, quantity=2)],
        ),
        saga_id,
    )
    assert reply["ok"] and reply["result"]["total"] == 2 * item.price
    return order_id


def state(order_id: uuid.UUID) -> str:
    return Order.objects.get(pk=order_id).state


def owner(order_id: uuid.UUID) -> uuid.UUID:
    return Order.objects.get(pk=order_id).customer_id


def test_unknown_menu_item_is_a_failure_reply_and_the_order_stays_rejected() -> None:
    order_id = uuid.uuid4()

    reply = send(
        "order.create_pending",
        OrderCreatePending(
            order_id=order_id,
            customer_id=uuid.uuid4(),
            items=[OrderLine(menu_item_id=424242, quantity=1)],
        ),
    )

    assert (reply["ok"], reply["reason"]) == (False, "unknown_menu_item")
    assert Order.objects.get(pk=order_id).reason == "unknown_menu_item"


def test_approve_is_idempotent() -> None:
    order_id = placed()

    assert send("order.approve", OrderRef(order_id=order_id))["ok"]
    assert send("order.approve", OrderRef(order_id=order_id))["ok"]
    assert state(order_id) == "approved"


def test_reject_of_an_order_never_created_leaves_a_tombstone_a_late_create_respects() -> None:
    order_id, customer_id = uuid.uuid4(), uuid.uuid4()

    assert send(
        "order.reject", OrderReject(order_id=order_id, customer_id=customer_id, reason="timeout")
    )["ok"]
    late = send(
        "order.create_pending",
        OrderCreatePending(
            order_id=order_id,
            customer_id=customer_id,
            items=[OrderLine(menu_item_id=1, quantity=1)],
        ),
    )

    assert state(order_id) == "rejected"
    assert late["ok"] is False


def test_an_approved_order_cannot_be_rejected() -> None:
    order_id = placed()
    send("order.approve", OrderRef(order_id=order_id))

    reply = send(
        "order.reject", OrderReject(order_id=order_id, customer_id=owner(order_id), reason="x")
    )

    assert (reply["ok"], reply["reason"]) == (False, "order_not_rejectable")


def test_a_pending_order_is_approved_or_rejected_only_by_the_saga_that_created_it() -> None:
    order_id = placed()
    other = uuid.uuid4()

    approve = send("order.approve", OrderRef(order_id=order_id), other)
    reject = send(
        "order.reject",
        OrderReject(order_id=order_id, customer_id=owner(order_id), reason="x"),
        other,
    )

    assert (approve["ok"], approve["reason"]) == (False, "order_locked")
    assert (reject["ok"], reject["reason"]) == (False, "order_locked")
    assert state(order_id) == "pending"
    assert send("order.approve", OrderRef(order_id=order_id))["ok"]


def test_commands_naming_another_customer_than_the_orders_are_refused() -> None:
    order_id = placed()
    stranger = uuid.uuid4()

    reject = send("order.reject", OrderReject(order_id=order_id, customer_id=stranger, reason="x"))
    create = send(
        "order.create_pending",
        OrderCreatePending(
            order_id=order_id, customer_id=stranger, items=[OrderLine(menu_item_id=1, quantity=1)]
        ),
    )

    assert (reject["ok"], reject["reason"]) == (False, "customer_mismatch")
    assert (create["ok"], create["reason"]) == (False, "customer_mismatch")
    assert state(order_id) == "pending" and owner(order_id) != stranger


def test_cancel_locks_the_order_for_its_saga_only() -> None:
    order_id = placed()
    send("order.approve", OrderRef(order_id=order_id))
    saga, other = uuid.uuid4(), uuid.uuid4()

    begun = send("order.begin_cancel", OrderRef(order_id=order_id), saga)
    again = send("order.begin_cancel", OrderRef(order_id=order_id), saga)
    rival = send("order.begin_cancel", OrderRef(order_id=order_id), other)
    rival_confirm = send("order.confirm_cancel", OrderRef(order_id=order_id), other)
    approve = send("order.approve", OrderRef(order_id=order_id))

    assert begun["ok"] and again["ok"]
    assert begun["result"]["total"] > 0 and begun["result"]["customer_id"]
    assert (rival["ok"], rival["reason"]) == (False, "order_not_cancellable")
    assert rival_confirm["ok"] is False
    assert approve["ok"]  # a late try of the approval answers as before, and changes nothing
    assert state(order_id) == "cancel_pending"

    assert send("order.confirm_cancel", OrderRef(order_id=order_id), saga)["ok"]
    assert send("order.confirm_cancel", OrderRef(order_id=order_id), saga)["ok"]
    assert state(order_id) == "cancelled"


def test_undo_cancel_puts_the_order_back() -> None:
    order_id = placed()
    send("order.approve", OrderRef(order_id=order_id))
    saga = uuid.uuid4()
    send("order.begin_cancel", OrderRef(order_id=order_id), saga)

    assert send("order.undo_cancel", OrderRef(order_id=order_id), saga)["ok"]
    assert send("order.undo_cancel", OrderRef(order_id=order_id), saga)["ok"]
    assert state(order_id) == "approved"


def test_a_late_begin_cancel_of_an_undone_cancellation_cannot_lock_the_order() -> None:
    # Found by the simulator (seed 38): begin_cancel timed out, the saga undid it (nothing to
    # undo yet) and ended, then a late try of begin_cancel locked the order for good.
    order_id = placed()
    send("order.approve", OrderRef(order_id=order_id))
    saga, later = uuid.uuid4(), uuid.uuid4()

    assert send("order.undo_cancel", OrderRef(order_id=order_id), saga)["ok"]
    late = send("order.begin_cancel", OrderRef(order_id=order_id), saga)

    assert (late["ok"], late["reason"]) == (False, "order_not_cancellable")
    assert state(order_id) == "approved"
    assert send("order.begin_cancel", OrderRef(order_id=order_id), later)["ok"]


def test_undoing_a_cancellation_that_does_not_hold_the_order_leaves_it_alone() -> None:
    # Found by the simulator (seed 1044): the order was rejected (or locked by a rival
    # cancellation), and the undo was refused forever, leaving the cancellation `failed`.
    rejected, held = placed(), placed()
    owner = Order.objects.get(pk=rejected).customer_id
    send("order.reject", OrderReject(order_id=rejected, customer_id=owner, reason="timeout"))
    send("order.approve", OrderRef(order_id=held))
    rival = uuid.uuid4()
    send("order.begin_cancel", OrderRef(order_id=held), rival)

    assert send("order.undo_cancel", OrderRef(order_id=rejected), uuid.uuid4())["ok"]
    assert send("order.undo_cancel", OrderRef(order_id=held), uuid.uuid4())["ok"]
    assert send("order.undo_cancel", OrderRef(order_id=uuid.uuid4()), uuid.uuid4())["ok"]

    assert (state(rejected), state(held)) == ("rejected", "cancel_pending")
    assert Order.objects.get(pk=held).saga_id == rival


def test_approving_an_order_a_cancellation_took_further_answers_ok() -> None:
    # Found by the simulator (seed 1021): the approval's reply was lost, the order was then
    # cancelled, and every re-sent approval was refused: the checkout failed for good.
    order_id = placed()
    send("order.approve", OrderRef(order_id=order_id))
    saga = uuid.uuid4()
    send("order.begin_cancel", OrderRef(order_id=order_id), saga)
    send("order.confirm_cancel", OrderRef(order_id=order_id), saga)

    assert send("order.approve", OrderRef(order_id=order_id))["ok"]
    assert state(order_id) == "cancelled"


def test_a_pending_order_cannot_be_cancelled() -> None:
    order_id = placed()

    reply = send("order.begin_cancel", OrderRef(order_id=order_id))

    assert (reply["ok"], reply["reason"]) == (False, "order_not_cancellable")
