"""Write use-cases of the orchestrator: start sagas, move them on replies and deadlines, and
operator actions. Every transition is one transaction: the saga row (locked), its history, and
the next command in the outbox."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from common import clock, tracing
from common.api.errors import BusinessError, NotFoundError
from common.auth.principal import Principal
from common.messaging.contract import Reply, reply_type
from common.messaging.envelope import Correlation, Envelope, InvalidMessage, new_command
from common.outbox.services import Also, outbox_put
from common.retention import prune_until_done
from common.transactions import locked, use_case_atomic
from orchestrator.sagas import engine, metrics
from orchestrator.sagas.admission import admission_check
from orchestrator.sagas.definitions import CANCEL_ORDER, DEFINITIONS, PLACE_ORDER
from orchestrator.sagas.engine import (
    NotApplicable,
    Outcome,
    Phase,
    SagaDefinition,
    Send,
    Status,
    StepState,
)
from orchestrator.sagas.models import Saga, SagaEvent

IN_FLIGHT = (Saga.State.RUNNING, Saga.State.COMPENSATING)
STARTED = {StepState.RUNNING, StepState.COMPENSATING}
FINISHED = {StepState.SUCCEEDED, StepState.FAILED, StepState.TIMED_OUT, StepState.COMPENSATED}


def policy() -> engine.Policy:
    return engine.Policy(
        max_attempts=settings.SAGA_MAX_ATTEMPTS,
        fail_after=settings.SAGA_FAIL_AFTER,
        reply_timeout_s=settings.SAGA_REPLY_TIMEOUT_S,
        backoff_cap_s=settings.SAGA_BACKOFF_CAP_S,
    )


def definition_of(saga: Saga) -> SagaDefinition:
    # A running saga keeps the definition version it started with.
    return DEFINITIONS[(saga.type, saga.version)]


def state_of(saga: Saga) -> engine.State:
    return engine.State(
        status=Status(saga.state),
        phase=Phase(saga.phase),
        current=saga.current_step,
        attempt=saga.attempt,
        data=saga.data,
        steps=tuple(StepState(s["state"]) for s in saga.steps),
        attempts=tuple(s["attempts"] for s in saga.steps),
        reason=saga.reason,
    )


def _steps_after(saga: Saga, state: engine.State, now: str) -> list[dict[str, Any]]:
    steps = []
    for row, new_state, attempts in zip(saga.steps, state.steps, state.attempts, strict=True):
        step = dict(row)
        if row["state"] != new_state or row["attempts"] != attempts:
            if new_state in STARTED and step["started_at"] is None:
                step["started_at"] = now
            if new_state in FINISHED:
                step["finished_at"] = now
            step["state"], step["attempts"] = new_state.value, attempts
        steps.append(step)
    return steps


def _apply(
    saga: Saga, outcome: Outcome, *, events: Sequence[dict[str, Any]] = (), new: bool = False
) -> None:
    """Persist a transition: the saga row, its history and the commands it sends, all in one
    statement (the outbox insert with the saga's upsert and history joined to it). ``events``
    are history rows (SagaEvent's fields) that came before the transition."""
    state, actions = outcome
    now = clock.now()
    history = [dict(e) for e in events]
    commands: list[Envelope] = []
    for action in actions:
        if isinstance(action, Send):
            command = new_command(
                action.command,
                action.payload,
                source=settings.SERVICE_NAME,
                correlation=Correlation(saga_id=saga.id, step=action.step, attempt=action.attempt),
            )
            commands.append(command)
            saga.outstanding_command_id = command.id
            saga.deadline = now + timedelta(seconds=action.deadline_in_s)
            kind = "compensation_sent" if action.compensation else "command_sent"
            history.append(
                {
                    "kind": kind,
                    "step": action.step,
                    "attempt": action.attempt,
                    "message_id": command.id,
                    "detail": {"command": action.command},
                }
            )
        else:
            history.append(
                {"kind": action.kind, "step": action.step or "", "detail": dict(action.detail)}
            )

    was = None if new else saga.state
    saga.steps = _steps_after(saga, state, now.isoformat().replace("+00:00", "Z"))
    saga.state, saga.phase, saga.reason = state.status.value, state.phase.value, state.reason
    saga.current_step, saga.attempt, saga.data = state.current, state.attempt, dict(state.data)
    saga.updated_at = now
    if state.status in engine.TERMINAL:
        saga.outstanding_command_id = saga.deadline = None
        saga.finished_at = now
    elif state.status is Status.FAILED:
        saga.deadline = None  # no more automatic tries; an operator decides
    for row in history:
        row.update(saga_id=saga.id, at=row.get("at") or now)
    with _traced_transition(saga):
        outbox_put(
            *commands,
            also=[
                Also(
                    "saga",
                    SAVE_SAGA,
                    [_json({f.attname: getattr(saga, f.attname) for f in SAGA_FIELDS})],
                ),
                Also("history", SAVE_HISTORY, [_json(history)]),
            ],
        )
    if saga.state != was:
        metrics.transition(saga, was)


def _traced_transition(saga: Saga) -> AbstractContextManager[Any]:
    """The transition's span (the commands it sends are its children), when tracing is on."""
    if not tracing.ACTIVE:
        return nullcontext()
    return tracing.step(
        "saga transition",
        {
            "cafe.saga.id": str(saga.id),
            "cafe.saga.type": saga.type,
            "cafe.saga.state": saga.state,
            "cafe.saga.step": str(saga.current_step),
        },
    )


SAGA_FIELDS = Saga._meta.concrete_fields
_UPDATED = ", ".join(
    f"{f.column} = EXCLUDED.{f.column}"
    for f in SAGA_FIELDS
    if f.name not in {"id", "type", "version", "created_at"}
)
# jsonb_populate_record turns the JSON into a row of the table's own types.
SAVE_SAGA = f"""
INSERT INTO {Saga._meta.db_table}
SELECT * FROM jsonb_populate_record(NULL::{Saga._meta.db_table}, %s::jsonb)
ON CONFLICT (id) DO UPDATE SET {_UPDATED}
"""  # noqa: S608 — table and column names are ours
SAVE_HISTORY = f"""
INSERT INTO {SagaEvent._meta.db_table} (saga_id, at, kind, step, attempt, message_id, detail)
SELECT saga_id, at, kind, coalesce(step, ''), attempt, message_id, coalesce(detail, '{{}}'::jsonb)
FROM jsonb_populate_recordset(NULL::{SagaEvent._meta.db_table}, %s::jsonb)
"""  # noqa: S608


def _json(value: object) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder)


IN_FLIGHT_COUNT = f"""
SELECT pg_advisory_xact_lock(hashtextextended(%s, 0)),
       (SELECT count(*) FROM {Saga._meta.db_table}
        WHERE customer_id = %s AND state IN ('running', 'compensating'))
"""  # noqa: S608 — the table name is ours


def _admit(customer_id: uuid.UUID) -> None:
    """Refuse a new saga while the customer has too many in flight (DESIGN.md §7 limits).

    The advisory lock serialises one customer's starts until the transaction ends, so two at
    once cannot both take the last place; other customers are not held up.
    """
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(IN_FLIGHT_COUNT, [f"saga-admission:{customer_id}", customer_id])
        (_, in_flight) = cursor.fetchone()
    if in_flight >= settings.SAGAS_IN_FLIGHT_PER_CUSTOMER:
        raise BusinessError(
            "too_many_sagas",
            f"{in_flight} checkouts or cancellations of this customer are still running.",
            status=429,
            retry_after_s=1,
        )


def saga_start(
    *,
    definition: SagaDefinition,
    data: Mapping[str, Any],
    order_id: uuid.UUID,
    customer_id: uuid.UUID,
) -> Saga:
    saga = Saga(
        id=clock.new_id(),
        created_at=clock.now(),
        type=definition.name,
        version=definition.version,
        state=Status.RUNNING,
        phase=Phase.FORWARD,
        data=dict(data),
        order_id=order_id,
        customer_id=customer_id,
        steps=[
            {
                "name": step.name,
                "state": "pending",
                "attempts": 0,
                "started_at": None,
                "finished_at": None,
            }
            for step in definition.steps
        ],
    )
    with use_case_atomic():
        _admit(customer_id)
        _apply(saga, engine.start(definition, data, policy()), new=True)
    metrics.STARTED.labels(definition.name).inc()
    return saga


def checkout_start(
    *, actor: Principal, customer_id: uuid.UUID | None, items: Sequence[Mapping[str, int]]
) -> Saga:
    """Start placing an order for ``customer_id`` (the caller, or anyone for an operator). Its
    id is assigned here, so the client knows it at once."""
    customer_id = actor.acting_for(customer_id)
    admission_check()
    order_id = clock.new_id()
    data = {
        "order_id": str(order_id),
        "customer_id": str(customer_id),
        "items": [{"menu_item_id": i["menu_item_id"], "quantity": i["quantity"]} for i in items],
    }
    return saga_start(definition=PLACE_ORDER, data=data, order_id=order_id, customer_id=customer_id)


def cancellation_start(*, actor: Principal, order_id: uuid.UUID) -> Saga:
    """Start cancelling an order this system placed for the caller (any order, for an operator);
    the order service decides if it still can be. Another customer's order is unknown here."""
    placed = Saga.objects.filter(type=Saga.Type.PLACE_ORDER, order_id=order_id).first()
    if placed is None or placed.customer_id is None or not actor.owns(placed.customer_id):
        raise NotFoundError("Order", order_id)
    admission_check()
    return saga_start(
        definition=CANCEL_ORDER,
        data={"order_id": str(order_id)},
        order_id=order_id,
        customer_id=placed.customer_id,
    )


def saga_on_reply(message: Envelope, reply: Reply) -> None:
    """A participant answered. Only the reply to the outstanding command moves the saga."""
    saga_id = message.correlation.saga_id
    with use_case_atomic():
        saga = locked(Saga, saga_id) if saga_id else None
        if saga is None:
            raise InvalidMessage("unroutable", f"no saga {saga_id} for reply {message.id}")
        received = {
            "kind": "reply",
            "step": message.correlation.step or "",
            "attempt": message.correlation.attempt,
            "message_id": message.id,
            "detail": {"ok": reply.ok, "reason": reply.reason, "result": reply.result},
            "at": clock.now(),
        }
        if message.correlation.in_reply_to != saga.outstanding_command_id:
            received["kind"] = "stale_reply"
            received["detail"] = {
                "in_reply_to": str(message.correlation.in_reply_to),
                "ok": reply.ok,
            }
            SagaEvent.objects.create(saga=saga, **received)
            return
        _check_answers_outstanding(saga, message)
        saga.outstanding_command_id = None
        outcome = engine.on_reply(
            definition_of(saga),
            state_of(saga),
            ok=reply.ok,
            reason=reply.reason,
            result=reply.result,
            policy=policy(),
        )
        _apply(saga, outcome, events=[received])


def _check_answers_outstanding(saga: Saga, message: Envelope) -> None:
    """A reply quoting the outstanding command's id must also be the reply to that command's
    type and step: the contract lets each participant answer only its own commands, and this
    holds it to the one it was sent. Anything else is forged (dead-lettered, no effect)."""
    step = definition_of(saga).steps[saga.current_step]
    if saga.phase == Phase.COMPENSATE:
        command = step.compensation.command if step.compensation else ""
    else:
        command = step.command
    expected = reply_type(command)
    if message.type != expected or message.correlation.step != step.name:
        raise InvalidMessage(
            "forged",
            f"{message.type} for step {message.correlation.step!r} quotes the outstanding "
            f"command of saga {saga.id}, which awaits {expected} for step {step.name!r}",
        )


def saga_sweep(*, limit: int = 200) -> int:
    """Move every saga whose reply is overdue: re-send with backoff, time out, or ask an operator."""
    now = clock.now()
    due = list(
        Saga.objects.filter(state__in=IN_FLIGHT, deadline__lte=now)
        .order_by("deadline", "pk")  # the same order every run of one seed
        .values_list("pk", flat=True)[:limit]
    )
    moved = 0
    for saga_id in due:
        with transaction.atomic():
            saga = (
                Saga.objects.select_for_update(skip_locked=True)
                .filter(pk=saga_id, state__in=IN_FLIGHT, deadline__lte=now)
                .first()
            )
            if saga is None:  # answered meanwhile, or another sweep has it
                continue
            _apply(saga, engine.on_timeout(definition_of(saga), state_of(saga), policy()))
            moved += 1
    return moved


OPERATOR_ACTIONS = {
    "retry": engine.operator_retry,
    "resume": engine.operator_resume,
    "force_compensate": engine.operator_force_compensate,
}


def saga_operator_action(*, saga_id: uuid.UUID, action: str, operator: str) -> Saga:
    """retry: send the current step again; resume: the operator vouches it took effect, go on;
    force_compensate: give up the forward path and compensate."""
    if action not in OPERATOR_ACTIONS:
        raise BusinessError("unknown_action", f"No operator action {action!r}.")
    with use_case_atomic():
        saga = locked(Saga, saga_id)
        if saga is None:
            raise NotFoundError("Saga", saga_id)
        try:
            outcome = OPERATOR_ACTIONS[action](definition_of(saga), state_of(saga), policy())
        except NotApplicable as exc:
            raise BusinessError(
                "not_applicable", f"Cannot {action} saga {saga_id}: {exc}.", status=409
            ) from exc
        acted = {
            "kind": "operator",
            "step": definition_of(saga).steps[saga.current_step].name,
            "detail": {"action": action, "operator": operator},
            "at": clock.now(),
        }
        saga.outstanding_command_id = None
        _apply(saga, outcome, events=[acted])
    return saga


PRUNE_FINISHED = f"""
WITH batch AS (
    SELECT id FROM {Saga._meta.db_table}
    WHERE state IN ('completed', 'rejected') AND finished_at < %s
    ORDER BY finished_at
    LIMIT %s
    FOR UPDATE SKIP LOCKED
), history AS (
    DELETE FROM {SagaEvent._meta.db_table} WHERE saga_id IN (SELECT id FROM batch)
)
DELETE FROM {Saga._meta.db_table} WHERE id IN (SELECT id FROM batch)
"""  # noqa: S608 — the table names are ours


def saga_prune(*, batch_size: int | None = None) -> int:
    """Delete completed and rejected sagas that finished longer ago than the retention period,
    with their history, a batch per transaction; returns how many sagas. Failed sagas wait for
    an operator and are kept."""
    cutoff = clock.now() - timedelta(hours=settings.SAGA_RETENTION_HOURS)
    size = batch_size or settings.PRUNE_BATCH_SIZE

    def batch() -> int:
        with transaction.atomic(), transaction.get_connection().cursor() as cursor:
            cursor.execute(PRUNE_FINISHED, [cutoff, size])
            return cursor.rowcount

    return prune_until_done(batch)
