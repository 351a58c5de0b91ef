"""The seeded scheduler: it owns every message in flight, the virtual clock and every fault.

One run: empty the databases, play the scenario's inputs at their virtual times, and between
them deliver messages in an order the seed chooses (any interleaving across and within queues),
fire the beat's deadline sweep each virtual second, and inject the enabled faults. When nothing
is left in flight, the auditor checks the databases; then an honest operator finishes what is
`failed`, without faults, and the auditor checks the Outcomes of DESIGN.md §7.
"""

from __future__ import annotations

import functools
import json
import math
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from account.accounts.models import OrderPayment
from account.accounts.services import account_deposit
from common import clock
from common.api.errors import BusinessError
from common.auth.principal import Principal
from common.inbox.tasks import Fate, consume_one
from common.messaging.contract import OrderRef, Reply
from common.messaging.envelope import Correlation, new_command, new_reply
from common.messaging.transport import Outgoing
from common.outbox.services import outbox_put
from customer.customers.models import Customer
from customer.customers.services import customer_block, customer_register, customer_unblock
from orchestrator.sagas.definitions import DEFINITIONS
from orchestrator.sagas.models import Saga
from orchestrator.sagas.services import (
    IN_FLIGHT,
    cancellation_start,
    checkout_start,
    saga_operator_action,
    saga_sweep,
)
from order.orders.models import MenuItem, Order, UndoneCancellation
from tests.sim import auditor
from tests.sim.handlers import CRASH, Crash
from tests.sim.scenario import Faults, Input, draw
from tests.sim.world import Relays, Sink, acting, reset

# Who acts at the API level: each customer for their own deposits and checkouts, an operator
# for cancellations, blocks and unblocks (who may act for anyone).
OPERATOR = Principal.for_operator("simulator")
PASSWORD = "simulated passphrase"


def as_customer(customer_id: uuid.UUID) -> Principal:
    return Principal.for_customer(customer_id)


EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
MAX_STEPS = 20_000
MAX_VIRTUAL_S = 6 * 3600.0
SWEEP_EVERY_S = 1.0
VISIBILITY_TIMEOUT_S = (20.0, 120.0)  # an unacknowledged message comes back after this long


def short(value: object) -> str:
    return str(value)[:8]


@dataclass
class Message:
    seq: int
    queue: str
    raw: str
    task_id: str
    due: float
    label: str
    ids: frozenset[str]
    retries: int = 0


@dataclass
class Run:
    seed: int
    trace: list[str] = field(default_factory=list)
    violations: list[auditor.Violation] = field(default_factory=list)
    delivered: int = 0
    virtual_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations


class Simulation(Sink):
    def __init__(self, seed: int, faults: Faults, *, keep: Sequence[int] | None = None) -> None:
        self.seed = seed
        self.faults = faults
        self.rng = random.Random(f"schedule-{seed}")
        self._ids = random.Random(f"ids-{seed}")
        self.menu = _menu()
        inputs = draw(seed, sorted(self.menu), malformed=faults.on("malformed"))
        self.inputs = [i for i in inputs if keep is None or i.index in keep]
        self.all_inputs = inputs
        self.t = 0.0
        self._ticks = 0
        self.inflight: list[Message] = []
        self._seq = 0
        self.run = Run(seed)
        self.relays = Relays(self)
        self.chaos = True
        self.customers: dict[int, uuid.UUID] = {}
        self.checkouts: dict[int, uuid.UUID] = {}  # checkout index -> order id
        self.expected_dead: dict[str, str] = {}  # message id -> the reason it must be parked for
        self.next_sweep = SWEEP_EVERY_S
        self.next_operator = self._operator_delay()
        self._deadline_known = False
        self._deadline: float | None = None

    # --- the seams: virtual time and seeded ids ------------------------------------------------
    def now(self) -> datetime:
        self._ticks += 1  # strictly increasing, so no two deadlines tie
        return EPOCH + timedelta(seconds=self.t, microseconds=self._ticks)

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self._ids.getrandbits(128), version=4)

    def log(self, line: str) -> None:
        self.run.trace.append(f"{self.t:9.3f}s  {line}")

    # --- a run -----------------------------------------------------------------------------------
    def execute(self) -> Run:
        reset()
        with clock.driven_by(now=self.now, new_id=self.new_id):
            self.log(
                f"seed {self.seed}; faults: {', '.join(sorted(self.faults.enabled)) or 'none'}"
            )
            settled = self._loop()
            if not settled:
                self.run.violations.append(
                    auditor.Violation("settles", "the run did not settle within its bounds", ())
                )
            self.run.violations += auditor.audit_settled(self.expected_dead)
            self.chaos = False
            self.log("-- faults off; the operator finishes every failed saga")
            for _ in range(6):
                if not self._finish_failed():
                    break
                if not self._loop():
                    break
            self.run.violations += auditor.audit_outcomes()
        self.run.virtual_s = self.t
        return self.run

    def _loop(self) -> bool:
        """Run until nothing is left to do; False if the bounds were hit first."""
        for _ in range(MAX_STEPS):
            if self.t > MAX_VIRTUAL_S:
                return False
            options: list[Callable[[], None]] = [
                functools.partial(self._deliver, m) for m in self.inflight if m.due <= self.t
            ]
            if self.inputs and self.inputs[0].at <= self.t:
                options.append(self._next_input)
            if self.next_sweep <= self.t:
                options.append(self._sweep)
            if self._operator_on() and self.next_operator <= self.t:
                options.append(self._operator)
            if options:
                options[self.rng.randrange(len(options))]()
                self._deadline_known = False
                self.t += self.rng.uniform(0.0005, 0.01)
                continue
            upcoming = [m.due for m in self.inflight]
            if self.inputs:
                upcoming.append(self.inputs[0].at)
            if self._operator_on():
                upcoming.append(self.next_operator)
            deadline = self._next_deadline()
            if deadline is not None:
                upcoming.append(
                    max(self.next_sweep, math.ceil(deadline / SWEEP_EVERY_S) * SWEEP_EVERY_S)
                )
            if not upcoming:
                return True
            self.t = max(self.t, min(upcoming))
            if self.next_sweep < self.t:
                self.next_sweep = math.ceil(self.t / SWEEP_EVERY_S) * SWEEP_EVERY_S
        return False

    def _operator_on(self) -> bool:
        return self.chaos and self.faults.on("operator") and bool(self.inputs or self.inflight)

    def _operator_delay(self) -> float:
        return self.t + self.rng.expovariate(1 / self.faults.operator_every_s)

    def _next_deadline(self) -> float | None:
        """The earliest reply deadline of a saga in flight (read again only after the
        orchestrator has acted: nothing else moves a deadline)."""
        if self._deadline_known:
            return self._deadline
        self._deadline_known = True
        with acting("orchestrator"):
            due = (
                Saga.objects.filter(state__in=IN_FLIGHT, deadline__isnull=False)
                .order_by("deadline")
                .values_list("deadline", flat=True)
                .first()
            )
        self._deadline = None if due is None else (due - EPOCH).total_seconds()
        return self._deadline

    # --- the transport ---------------------------------------------------------------------------
    def publish(self, messages: Sequence[Outgoing]) -> None:
        for out in messages:
            envelope = json.loads(out.envelope_json)
            label, ids = _describe(envelope)
            if self._fault("loss") and envelope["kind"] != "event":
                self.log(f"lost      {label}")
                continue
            copies = 2 if self._fault("duplicate") else 1
            for copy in range(copies):
                self._put(out.queue, out.envelope_json, out.message_id, label, ids)
                if copy:
                    self.log(f"duplicate {label}")

    def _put(
        self,
        queue: str,
        raw: str,
        task_id: str,
        label: str,
        ids: frozenset[str],
        *,
        after: float = 0.0,
    ) -> None:
        delay = after or (
            self.rng.uniform(5.0, 60.0) if self._fault("late") else self.rng.expovariate(5.0)
        )
        self._seq += 1
        self.inflight.append(Message(self._seq, queue, raw, task_id, self.t + delay, label, ids))

    def _fault(self, kind: str) -> bool:
        if not (self.chaos and self.faults.on(kind)):
            return False
        return self.rng.random() < float(getattr(self.faults, kind))

    def _deliver(self, message: Message) -> None:
        self.inflight.remove(message)
        self.run.delivered += 1
        crash_before = self._fault("crash_before_commit")
        crash_after = self._fault("crash_after_commit")
        CRASH.armed = crash_before
        fate = ""
        with acting(message.queue):
            try:
                outcome = consume_one(message.raw, task_id=message.task_id, retries=message.retries)
                if outcome.fate is Fate.GIVEN_BACK:
                    fate = self._given_back(message, outcome.error)
                else:
                    fate = str(outcome.fate)
            except Crash:
                self._again(message, self.rng.uniform(*VISIBILITY_TIMEOUT_S))
                fate = "worker died before the commit: redelivered later"
            finally:
                CRASH.armed = False
            self.relays.drain(message.queue)
        if crash_after and fate in {"handled", "duplicate"}:
            fate += "; worker died before the ack: redelivered later"
            self._again(message, self.rng.uniform(*VISIBILITY_TIMEOUT_S))
        self.log(f"deliver   {message.label} → {message.queue}: {fate}")

    def _given_back(self, message: Message, error: Exception | None) -> str:
        """As the task does with a given-back envelope: a retry later, with backoff (the
        consumer itself parks it once the retries are spent)."""
        message.retries += 1
        self._again(message, min(0.5 * 2**message.retries, 60.0))
        return f"error {type(error).__name__}: {error}; retry {message.retries}"

    def _again(self, message: Message, after: float) -> None:
        self._seq += 1
        message.seq, message.due = self._seq, self.t + after
        self.inflight.append(message)

    # --- the beat --------------------------------------------------------------------------------
    def _sweep(self) -> None:
        self.next_sweep = self.t + SWEEP_EVERY_S
        with acting("orchestrator"):
            moved = saga_sweep()
            self.relays.drain("orchestrator")
        if moved:
            self.log(f"sweep     {moved} saga(s) past their deadline")

    # --- the clients -----------------------------------------------------------------------------
    def _next_input(self) -> None:
        step = self.inputs.pop(0)
        service, act = self._input_action(step)
        if act is None:
            self.log(f"skip      {step.describe()} (what it refers to was not made)")
            return
        with acting(service):
            try:
                what = act()
            except BusinessError as refused:
                what = f"refused {refused.code}"
            self.relays.drain(service)
        self.log(f"input     {step.describe()}: {what}")

    def _input_action(self, step: Input) -> tuple[str, Callable[[], str] | None]:
        a = step.args
        if step.kind == "register":

            def register() -> str:
                c = customer_register(
                    name=f"customer {a['customer']}",
                    email=f"c{a['customer']}@sim.test",
                    password=PASSWORD,
                )
                self.customers[a["customer"]] = c.id
                return f"customer {short(c.id)}"

            return "customer", register
        customer = self.customers.get(a.get("customer", -1))
        if step.kind == "deposit":
            if customer is None:
                return "account", None
            return (
                "account",
                lambda: (
                    f"customer {short(customer)} balance "
                    f"{account_deposit(actor=as_customer(customer), customer_id=customer, amount=a['amount']).balance}"
                ),
            )
        if step.kind == "checkout":
            if customer is None:
                return "orchestrator", None

            def checkout() -> str:
                saga = checkout_start(
                    actor=as_customer(customer),
                    customer_id=customer,
                    items=[{"menu_item_id": m, "quantity": q} for m, q in a["items"]],
                )
                self.checkouts[a["checkout"]] = saga.order_id
                return f"saga {short(saga.id)} order {short(saga.order_id)}"

            return "orchestrator", checkout
        if step.kind == "cancel":
            order_id = self.checkouts.get(a["checkout"])
            if order_id is None:
                return "orchestrator", None
            return (
                "orchestrator",
                lambda: (
                    f"saga {short(cancellation_start(actor=OPERATOR, order_id=order_id).id)} "
                    f"order {short(order_id)}"
                ),
            )
        if step.kind in {"block", "unblock"}:
            if customer is None:
                return "customer", None
            use_case = customer_block if step.kind == "block" else customer_unblock
            return (
                "customer",
                lambda: (
                    f"customer {short(customer)} "
                    f"{use_case(actor=OPERATOR, customer_id=customer).status}"
                ),
            )
        if step.kind == "malformed":
            return self._malformed(a["variant"])
        raise ValueError(f"unknown input {step.kind}")

    def _malformed(self, variant: str) -> tuple[str, Callable[[], str]]:
        """Messages no handler can ever apply; each must end in the dead-letter table."""
        if variant == "garbage":

            def garbage() -> str:
                task_id = str(self.new_id())
                self.expected_dead[task_id] = "undecodable"
                self._put(
                    self.rng.choice(["order", "account"]),
                    "{not json",
                    task_id,
                    "garbage",
                    frozenset(),
                )
                return f"garbage body {short(task_id)}"

            return "order", garbage
        if variant == "no_saga_id":

            def no_saga_id() -> str:  # a sender's bug: a saga command without its saga
                command = new_command(
                    "order.confirm_cancel",
                    OrderRef(order_id=self.new_id()),
                    source=settings.SERVICE_NAME,
                )
                self.expected_dead[str(command.id)] = "handler_error"
                with transaction.atomic():
                    outbox_put(command)
                return f"order.confirm_cancel {short(command.id)} without a saga id"

            return "orchestrator", no_saga_id

        def orphan_reply() -> str:  # a reply to a command of no saga
            command = new_command(
                "order.approve",
                OrderRef(order_id=self.new_id()),
                source="orchestrator",
                correlation=Correlation(saga_id=self.new_id(), step="approve_order", attempt=1),
            )
            reply = new_reply(command, Reply(ok=True), source=settings.SERVICE_NAME)
            self.expected_dead[str(reply.id)] = "unroutable"
            with transaction.atomic():
                outbox_put(reply)
            return f"reply {short(reply.id)} to no saga"

        return "order", orphan_reply

    # --- the operator ----------------------------------------------------------------------------
    def _failed(self) -> list[Saga]:
        with acting("orchestrator"):
            return list(Saga.objects.filter(state=Saga.State.FAILED).order_by("id"))

    def _operator(self) -> None:
        self.next_operator = self._operator_delay()
        failed = self._failed()
        if not failed:
            return
        saga = failed[self.rng.randrange(len(failed))]
        action = self.rng.choice(["retry", "retry", "resume", "force_compensate"])
        if action == "resume" and not self._took_effect(saga):
            action = "retry"  # an honest operator resumes only what they saw take effect
        self._act(saga, action)

    def _finish_failed(self) -> bool:
        """The operator retries every failed saga (resumes it if its step took effect)."""
        failed = self._failed()
        for saga in failed:
            self._act(saga, "resume" if self._took_effect(saga) else "retry")
        return bool(failed)

    def _act(self, saga: Saga, action: str) -> None:
        self._deadline_known = False
        with acting("orchestrator"):
            try:
                saga_operator_action(saga_id=saga.id, action=action, operator="sim")
                what = "done"
            except BusinessError as refused:
                what = f"refused {refused.code}"
            except KeyError as exc:  # the engine could not build the next command
                what = f"error KeyError {exc}"
                self.run.violations.append(
                    auditor.Violation(
                        "operator",
                        f"{action} of saga {short(saga.id)} failed: KeyError {exc}",
                        (str(saga.id),),
                    )
                )
            self.relays.drain("orchestrator")
        self.log(f"operator  {action} saga {short(saga.id)} at {_current(saga)}: {what}")

    def _took_effect(self, saga: Saga) -> bool:
        """What the operator sees in the participant's admin: did the current command take effect?"""
        command = _current(saga)
        order_id = saga.order_id
        if command.startswith("account."):
            with acting("account"):
                payment = OrderPayment.objects.filter(order_id=order_id).first()
            if command == "account.debit":
                return payment is not None and payment.state == OrderPayment.State.CHARGED
            return payment is not None and payment.state != OrderPayment.State.CHARGED
        if command == "customer.verify":
            if saga.customer_id is None:
                return False
            with acting("customer"):
                return Customer.objects.filter(pk=saga.customer_id, status="active").exists()
        with acting("order"):
            order = Order.objects.filter(pk=order_id).first()
            undone = UndoneCancellation.objects.filter(pk=saga.id).exists()
        if command == "order.undo_cancel":
            return undone and (
                order is None or order.saga_id != saga.id or order.state != "cancel_pending"
            )
        if order is None:
            return False
        expected = {
            "order.create_pending": (Order.State.PENDING, saga.id),
            "order.approve": (Order.State.APPROVED, None),
            "order.reject": (Order.State.REJECTED, None),
            "order.begin_cancel": (Order.State.CANCEL_PENDING, saga.id),
            "order.confirm_cancel": (Order.State.CANCELLED, saga.id),
        }[command]
        return order.state == expected[0] and expected[1] in {None, order.saga_id}


def _current(saga: Saga) -> str:
    step = DEFINITIONS[(saga.type, saga.version)].steps[saga.current_step]
    if saga.phase == "compensate" and step.compensation is not None:
        return step.compensation.command
    return step.command


def _describe(envelope: dict[str, Any]) -> tuple[str, frozenset[str]]:
    c = envelope.get("correlation") or {}
    payload = envelope.get("payload") or {}
    ids = {
        str(v) for v in (c.get("saga_id"), payload.get("order_id"), payload.get("customer_id")) if v
    }
    parts = [envelope["type"], short(envelope["id"])]
    if payload.get("order_id"):
        parts.append(f"order {short(payload['order_id'])}")
    if c.get("saga_id"):
        parts.append(f"saga {short(c['saga_id'])} {c.get('step')} try {c.get('attempt')}")
    if envelope["kind"] == "reply":
        parts.append("ok" if payload.get("ok") else f"no: {payload.get('reason')}")
    return " ".join(parts), frozenset(ids)


def _menu() -> dict[int, int]:
    with acting("order"):
        return dict(MenuItem.objects.filter(available=True).values_list("id", "price"))
