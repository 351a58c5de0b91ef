"""The auditor: after a run, read every service's database and check what DESIGN.md §7 promises.

Two checks. When the run has settled (nothing in flight): every saga has ended or is `failed`
where an operator sees it, no order is locked by a saga that has let go of it, no outbox row
waits, and every dead letter is one the run injected. After an operator has finished every
failed saga: the Outcomes, order by order and customer by customer.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Sum

from account.accounts.models import Account, LedgerEntry
from common.inbox.models import DeadLetter
from common.outbox.models import OutboxMessage
from orchestrator.sagas.models import Saga
from order.orders.models import Order
from tests.sim.settings import SERVICES
from tests.sim.world import acting


@dataclass(frozen=True)
class Violation:
    rule: str
    text: str
    ids: tuple[str, ...]  # the sagas, orders and customers involved (to cut the trace)

    def __str__(self) -> str:
        return f"[{self.rule}] {self.text}"


def _s(value: object) -> str:
    return str(value)[:8]


def _sagas() -> list[Saga]:
    with acting("orchestrator"):
        return list(Saga.objects.order_by("created_at", "id"))


def _orders() -> dict[uuid.UUID, Order]:
    with acting("order"):
        return {o.id: o for o in Order.objects.order_by("id")}


def audit_settled(expected_dead: dict[str, str]) -> list[Violation]:
    found: list[Violation] = []
    sagas = _sagas()
    by_id = {s.id: s for s in sagas}
    for saga in sagas:
        if saga.state in {Saga.State.RUNNING, Saga.State.COMPENSATING}:
            found.append(
                Violation(
                    "saga-ends",
                    f"{saga.type} {_s(saga.id)} is still {saga.state} with nothing in flight "
                    f"and no deadline to move it",
                    (str(saga.id), str(saga.order_id)),
                )
            )
    for order in _orders().values():
        if order.state not in {Order.State.PENDING, Order.State.CANCEL_PENDING}:
            continue
        if order.state == Order.State.PENDING:
            holders = [
                s for s in sagas if s.type == Saga.Type.PLACE_ORDER and s.order_id == order.id
            ]
        else:
            holders = [by_id[order.saga_id]] if order.saga_id in by_id else []
        live = [s for s in holders if s.state not in {Saga.State.COMPLETED, Saga.State.REJECTED}]
        if not live:
            found.append(
                Violation(
                    "order-lock",
                    f"order {_s(order.id)} is {order.state} but no running or failed saga holds "
                    f"it (held by {_s(order.saga_id)}: "
                    f"{', '.join(f'{s.type} {_s(s.id)} {s.state}' for s in holders) or 'none'})",
                    (str(order.id), *(str(s.id) for s in holders)),
                )
            )
    for service in SERVICES:
        with acting(service):
            pending = OutboxMessage.objects.exclude(status=OutboxMessage.Status.SENT).count()
            letters = list(
                DeadLetter.objects.order_by("id").values_list("message_id", "reason", "error")
            )
        if pending:
            found.append(Violation("outbox", f"{service}: {pending} outbox row(s) never sent", ()))
        for message_id, reason, error in letters:
            if expected_dead.get(message_id) != reason:
                found.append(
                    Violation(
                        "dead-letter",
                        f"{service} parked {_s(message_id)} ({reason}) unexplained: "
                        f"{error.strip().splitlines()[-1][:200]}",
                        (message_id,),
                    )
                )
    return found


def audit_outcomes() -> list[Violation]:
    found: list[Violation] = []
    sagas = _sagas()
    orders = _orders()
    with acting("account"):
        entries = list(
            LedgerEntry.objects.order_by("id").values_list(
                "account_id", "kind", "amount", "order_id"
            )
        )
        balances = dict(Account.objects.values_list("customer_id", "balance"))
    money: dict[uuid.UUID, list[tuple[str, int]]] = defaultdict(list)
    for _, kind, amount, order_id in entries:
        if order_id is not None:
            money[order_id].append((kind, amount))

    def bad(rule: str, text: str, *ids: object) -> None:
        found.append(Violation(rule, text, tuple(str(i) for i in ids)))

    placed = {s.order_id: s for s in sagas if s.type == Saga.Type.PLACE_ORDER}
    cancels: dict[uuid.UUID, list[Saga]] = defaultdict(list)
    for saga in sagas:
        if saga.type == Saga.Type.CANCEL_ORDER:
            cancels[saga.order_id].append(saga)
        if saga.state not in {Saga.State.COMPLETED, Saga.State.REJECTED}:
            bad(
                "saga-ends",
                f"{saga.type} {_s(saga.id)} is {saga.state} after the operator finished",
                saga.id,
                saga.order_id,
            )

    for order_id, saga in placed.items():
        order = orders.get(order_id)
        moved = money.get(order_id, [])
        charges = [a for k, a in moved if k == "charge"]
        refunds = [a for k, a in moved if k == "refund"]
        ids = (saga.id, order_id, saga.customer_id, *(c.id for c in cancels[order_id]))
        if saga.state == Saga.State.COMPLETED:
            if order is None or order.state not in {Order.State.APPROVED, Order.State.CANCELLED}:
                bad(
                    "completed",
                    f"checkout {_s(saga.id)} completed but order {_s(order_id)} is {order.state if order else 'missing'}",
                    *ids,
                )
            elif charges != [-order.total]:
                bad(
                    "completed",
                    f"checkout {_s(saga.id)} completed; order {_s(order_id)} of {order.total} charged {charges}",
                    *ids,
                )
        if saga.state == Saga.State.REJECTED:
            if order is None or order.state != Order.State.REJECTED:
                bad(
                    "rejected",
                    f"checkout {_s(saga.id)} rejected ({saga.reason}) but order {_s(order_id)} is {order.state if order else 'missing'}",
                    *ids,
                )
            if sum(a for _, a in moved) != 0:
                bad(
                    "rejected",
                    f"checkout {_s(saga.id)} rejected ({saga.reason}) but order {_s(order_id)} has net charge {-sum(a for _, a in moved)} (charges {charges}, refunds {refunds})",
                    *ids,
                )
        if order is None:
            continue
        done = [c for c in cancels[order_id] if c.state == Saga.State.COMPLETED]
        if order.state == Order.State.APPROVED and (saga.state != Saga.State.COMPLETED or refunds):
            bad(
                "approved",
                f"order {_s(order_id)} approved; checkout {saga.state}, refunds {refunds}",
                *ids,
            )
        if order.state == Order.State.CANCELLED:
            if len(done) != 1:
                bad(
                    "cancelled",
                    f"order {_s(order_id)} cancelled by {len(done)} completed cancellations",
                    *ids,
                )
            if refunds != [order.total]:
                bad(
                    "cancelled",
                    f"order {_s(order_id)} of {order.total} cancelled, refunded {refunds}",
                    *ids,
                )
        elif done:
            bad(
                "cancelled",
                f"cancellation {_s(done[0].id)} completed but order {_s(order_id)} is {order.state}",
                *ids,
            )
        if order.state in {Order.State.PENDING, Order.State.CANCEL_PENDING}:
            bad(
                "order-lock",
                f"order {_s(order_id)} still {order.state} after every saga ended",
                *ids,
            )

    owed: dict[uuid.UUID, int] = defaultdict(int)
    for account_id, kind, amount, _ in entries:
        if kind == "deposit":
            owed[account_id] += amount
    for order in orders.values():
        if order.state in {Order.State.APPROVED, Order.State.CANCEL_PENDING}:
            owed[order.customer_id] -= order.total
    for customer_id, balance in balances.items():
        if balance != owed[customer_id]:
            bad(
                "balance",
                f"customer {_s(customer_id)} balance {balance} ≠ deposits − approved totals = {owed[customer_id]}",
                customer_id,
            )
        if balance < 0:
            bad("balance", f"customer {_s(customer_id)} balance {balance} is negative", customer_id)
    with acting("account"):
        ledger = dict(
            LedgerEntry.objects.values("account_id")
            .annotate(total=Sum("amount"))
            .values_list("account_id", "total")
        )
    for customer_id, balance in balances.items():
        if ledger.get(customer_id, 0) != balance:
            bad(
                "ledger",
                f"customer {_s(customer_id)} balance {balance} ≠ ledger sum {ledger.get(customer_id, 0)}",
                customer_id,
            )
    return found
