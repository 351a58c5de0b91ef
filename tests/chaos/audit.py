"""After the faults: wait (bounded) until the system is quiet, then check DESIGN.md §7's
Outcomes for every customer and order the clients touched, reading only what the API (with an
operator's token) and the operator listener's metrics show."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.chaos.client import Login
from tests.chaos.drive import Record
from tests.chaos.stack import SERVICES

TERMINAL = {"completed", "rejected", "failed"}
HELD = {"approved", "cancel_pending"}  # orders whose total the account still holds


@dataclass(frozen=True)
class Violation:
    kind: str  # lost, duplicated, stuck, outcome
    rule: str
    text: str

    def __str__(self) -> str:
        return f"{self.kind:<10} [{self.rule}] {self.text}"


@dataclass
class Finals:
    """The state of everything at the end, as the API shows it."""

    checkouts: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    cancellations: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    opened: set[str] = field(default_factory=set)
    backlog: dict[str, float] = field(default_factory=dict)
    settle_s: float = 0.0


def backlog(operator_url: str) -> dict[str, float]:
    """Outbox rows not yet published and dead, dead letters, sagas in flight — summed over the
    services (from each one's ``/metrics``, on the operator listener)."""
    totals: dict[str, float] = {}
    wanted = {"outbox_pending", "outbox_dead_rows", "inbox_dead_letters_open", "sagas_in_flight"}
    with httpx.Client(base_url=operator_url, timeout=10) as http:
        for service in SERVICES:
            try:
                text = http.get(f"/{service}/metrics").text
            except httpx.TransportError:
                totals["unreachable"] = totals.get("unreachable", 0) + 1
                continue
            for family in text_string_to_metric_families(text):
                if family.name in wanted:
                    totals[family.name] = totals.get(family.name, 0) + sum(
                        s.value for s in family.samples
                    )
    return totals


def settle(
    operator: Login, operator_url: str, record: Record, timeout_s: float, say: Callable[[str], None]
) -> Finals:
    """Poll until every saga has ended, every account is open and nothing waits in an outbox
    or runs in the orchestrator — or until ``timeout_s`` has passed."""
    started = time.monotonic()
    finals = Finals()
    waiting = {("checkouts", i) for i in record.checkouts} | {
        ("cancellations", i) for i in record.cancellations
    }
    unopened = set(record.customers)
    last_said = 0.0
    while True:
        for kind, saga_id in sorted(waiting):
            response = operator.call("GET", f"/api/v1/{kind}/{saga_id}")
            body = response.json() if response.status_code == 200 else None
            getattr(finals, kind)[saga_id] = body
            if body is not None and body["state"] in TERMINAL:
                waiting.discard((kind, saga_id))
        for customer_id in sorted(unopened):
            if operator.call("GET", f"/api/v1/accounts/{customer_id}").status_code == 200:
                unopened.discard(customer_id)
        finals.backlog = backlog(operator_url)
        busy = any(finals.backlog.get(k) for k in ("outbox_pending", "sagas_in_flight"))
        elapsed = time.monotonic() - started
        if not waiting and not unopened and not busy:
            break
        if elapsed > timeout_s:
            say(f"not quiet after {timeout_s:.0f}s")
            break
        if elapsed - last_said > 10:
            last_said = elapsed
            say(
                f"settling: {len(waiting)} sagas not ended, {len(unopened)} accounts not open, "
                f"backlog {finals.backlog}"
            )
        time.sleep(1.0)
    finals.opened = set(record.customers) - unopened
    finals.settle_s = time.monotonic() - started
    return finals


def audit(operator: Login, record: Record, finals: Finals) -> list[Violation]:
    found: list[Violation] = []
    add = lambda kind, rule, text: found.append(Violation(kind, rule, text))  # noqa: E731

    for customer_id in record.customers:
        if customer_id not in finals.opened:
            add("lost", "account-opens", f"customer {customer_id}: no account (404)")
    for kind, sagas in (("checkout", finals.checkouts), ("cancellation", finals.cancellations)):
        for saga_id, final in sagas.items():
            if final is None:
                add("lost", "saga-exists", f"{kind} {saga_id} answered 202, now not found")
            elif final["state"] not in TERMINAL:
                add("stuck", "saga-ends", f"{kind} {saga_id} still {final['state']}")
    for name in ("outbox_pending", "sagas_in_flight"):
        if finals.backlog.get(name):
            add("stuck", "quiet", f"{name} = {finals.backlog[name]:.0f} at the end")
    for name in ("outbox_dead_rows", "inbox_dead_letters_open"):
        if finals.backlog.get(name):
            add("lost", "nothing-parked", f"{name} = {finals.backlog[name]:.0f}")

    checkout_of = {c["order_id"]: c for c in finals.checkouts.values() if c}
    cancellations_of: dict[str, list[dict[str, Any]]] = {}
    for c in finals.cancellations.values():
        if c:
            cancellations_of.setdefault(c["order_id"], []).append(c)

    for customer in record.customers.values():
        if customer.id not in finals.opened:
            continue
        account = operator.call("GET", f"/api/v1/accounts/{customer.id}").json()
        entries = operator.pages(f"/api/v1/accounts/{customer.id}/entries")
        orders = {o["id"]: o for o in operator.pages(f"/api/v1/orders?customer_id={customer.id}")}
        found += _customer(customer.id, customer.deposits, account["balance"], entries, orders)
        for order_id, order in orders.items():
            checkout = checkout_of.get(order_id)
            if checkout is None:
                add("duplicated", "no-phantom-order", f"order {order_id} no checkout of ours made")
                continue
            found += _order(order, checkout, cancellations_of.get(order_id, []), entries)
        for checkout in (c for c in finals.checkouts.values() if c):
            mine = checkout["customer_id"] == customer.id
            if mine and checkout["order_id"] not in orders and checkout["state"] == "completed":
                add("lost", "completed-has-order", f"checkout {checkout['id']}: no order")
    return found


def _customer(
    customer_id: str,
    accepted: dict[str, int],
    balance: int,
    entries: list[dict[str, Any]],
    orders: dict[str, dict[str, Any]],
) -> list[Violation]:
    found: list[Violation] = []
    deposits = {str(e["id"]): e["amount"] for e in entries if e["kind"] == "deposit"}
    for entry_id in accepted.keys() - deposits.keys():
        found.append(Violation("lost", "deposit-kept", f"{customer_id}: deposit {entry_id}"))
    for entry_id in deposits.keys() - accepted.keys():
        found.append(Violation("duplicated", "deposit-once", f"{customer_id}: deposit {entry_id}"))
    held = sum(o["total"] for o in orders.values() if o["state"] in HELD)
    expected = sum(deposits.values()) - held
    if balance != expected:
        found.append(
            Violation(
                "outcome",
                "balance",
                f"{customer_id}: balance {balance} != deposits {sum(deposits.values())} - held {held}",
            )
        )
    if balance != sum(e["amount"] for e in entries):
        found.append(Violation("outcome", "ledger-sum", f"{customer_id}: balance {balance}"))
    if balance < 0:
        found.append(Violation("outcome", "never-negative", f"{customer_id}: balance {balance}"))
    return found


def _order(
    order: dict[str, Any],
    checkout: dict[str, Any],
    cancellations: list[dict[str, Any]],
    entries: list[dict[str, Any]],
) -> list[Violation]:
    found: list[Violation] = []
    add = lambda kind, rule, text: found.append(Violation(kind, rule, text))  # noqa: E731
    oid, state, total = order["id"], order["state"], order["total"]
    mine = [e for e in entries if e["order_id"] == oid]
    charges = [e for e in mine if e["kind"] == "charge"]
    refunds = [e for e in mine if e["kind"] == "refund"]
    net = -sum(e["amount"] for e in mine)
    if len(charges) > 1:
        add("duplicated", "charged-once", f"order {oid}: {len(charges)} charges")
    if len(refunds) > 1:
        add("duplicated", "refunded-once", f"order {oid}: {len(refunds)} refunds")
    if net != (total if state in HELD else 0):
        add("outcome", "net-charge", f"order {oid} ({state}, total {total}): net charge {net}")
    done = checkout["state"]
    if done == "failed":  # waits for an operator, visible in the admin: counted, not judged
        return found
    if (done == "completed") != (state in {"approved", "cancel_pending", "cancelled"}):
        add("outcome", "completed-iff-approved", f"order {oid} {state}, checkout {done}")
    if done == "completed" and [c["amount"] for c in charges] != [-total]:
        add(
            "outcome", "charged-its-total", f"order {oid}: charges {[c['amount'] for c in charges]}"
        )
    if (done == "rejected") != (state == "rejected"):
        add("outcome", "rejected-iff-rejected", f"order {oid} {state}, checkout {done}")
    if state in {"pending", "cancel_pending"}:
        add("stuck", "order-unlocked", f"order {oid} still {state}")
    completed = [c for c in cancellations if c["state"] == "completed"]
    if (state == "cancelled") != bool(completed):
        add("outcome", "cancelled-iff-completed", f"order {oid} {state}, {len(completed)} done")
    if len(completed) > 1:
        add("duplicated", "cancelled-once", f"order {oid}: {len(completed)} cancellations")
    if state == "cancelled" and [r["amount"] for r in refunds] != [total]:
        add(
            "outcome",
            "refunded-its-total",
            f"order {oid}: refunds {[r['amount'] for r in refunds]}",
        )
    return found
