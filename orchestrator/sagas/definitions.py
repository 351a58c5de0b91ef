"""The sagas, as DESIGN.md §6 states them. Each fits on one screen and names its pivot."""

from __future__ import annotations

from common.messaging.contract import (
    AccountMovement,
    CustomerVerify,
    OrderCreatePending,
    OrderLine,
    OrderRef,
    OrderReject,
)
from orchestrator.sagas.engine import Compensation, Data, SagaDefinition, Step


def _order(d: Data) -> OrderRef:
    return OrderRef(order_id=d["order_id"])


def _money(d: Data) -> AccountMovement:
    return AccountMovement(customer_id=d["customer_id"], order_id=d["order_id"], amount=d["total"])


PLACE_ORDER = SagaDefinition(
    name="place_order",
    version=1,
    steps=(
        Step(
            "create_order",
            "order.create_pending",
            lambda d: OrderCreatePending(
                order_id=d["order_id"],
                customer_id=d["customer_id"],
                items=[OrderLine(**line) for line in d["items"]],
            ),
            compensation=Compensation(
                "order.reject",
                lambda d: OrderReject(
                    order_id=d["order_id"],
                    customer_id=d["customer_id"],
                    reason=d["reason"] or "rejected",
                ),
            ),
            keep=("total",),
        ),
        Step(
            "verify_customer",
            "customer.verify",
            lambda d: CustomerVerify(customer_id=d["customer_id"]),
        ),
        # The pivot: once the money is taken, the order goes through.
        Step(
            "debit",
            "account.debit",
            _money,
            compensation=Compensation("account.refund", _money),
            pivot=True,
        ),
        Step("approve_order", "order.approve", _order),
    ),
)

CANCEL_ORDER = SagaDefinition(
    name="cancel_order",
    version=1,
    steps=(
        # The pivot: the only step that may say no (an order that is not approved).
        Step(
            "begin_cancel",
            "order.begin_cancel",
            _order,
            compensation=Compensation("order.undo_cancel", _order),
            keep=("customer_id", "total"),
            pivot=True,
        ),
        # A refund cannot be taken back: it and what follows are retried until they succeed.
        Step("refund", "account.refund", _money),
        Step("confirm_cancel", "order.confirm_cancel", _order),
    ),
)

DEFINITIONS: dict[tuple[str, int], SagaDefinition] = {
    (d.name, d.version): d for d in (PLACE_ORDER, CANCEL_ORDER)
}
LATEST: dict[str, SagaDefinition] = {d.name: d for d in (PLACE_ORDER, CANCEL_ORDER)}
