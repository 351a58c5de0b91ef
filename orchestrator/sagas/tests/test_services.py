"""Saga persistence: each transition with its command in the outbox, replies matched to the
outstanding command, deadlines swept, concurrent replies serialised."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from common.messaging.contract import Reply
from common.messaging.envelope import Envelope, new_reply
from common.outbox.models import OutboxMessage
from common.testing import OPERATOR
from common.tests.support import consumed, wire
from orchestrator.sagas.models import Saga, SagaEvent
from orchestrator.sagas.services import (
    cancellation_start,
    checkout_start,
    saga_operator_action,
    saga_sweep,
)

pytestmark = pytest.mark.django_db(transaction=True)

ITEMS = [{"menu_item_id": 1, "quantity": 2}]


def outstanding(saga: Saga) -> Envelope:
    saga.refresh_from_db()
    assert saga.outstanding_command_id is not None
    row = OutboxMessage.objects.get(message_id=saga.outstanding_command_id)
    return Envelope.model_validate(row.envelope)


def answer(
    command: Envelope, *, ok: bool = True, reason: str | None = None, **result: object
) -> str:
    reply = new_reply(
        command, Reply(ok=ok, reason=reason, result=result), source=command.destination or "x"
    )
    return consumed(wire(reply))


def test_a_checkout_starts_with_its_first_command_in_the_outbox() -> None:
    customer_id = uuid.uuid4()

    saga = checkout_start(actor=OPERATOR, customer_id=customer_id, items=ITEMS)

    command = outstanding(saga)
    assert command.type == "order.create_pending"
    assert command.destination == "order" and command.reply_to == "orchestrator"
    assert command.correlation.saga_id == saga.id
    assert (command.correlation.step, command.correlation.attempt) == ("create_order", 1)
    assert command.payload["order_id"] == str(saga.order_id)
    assert saga.state == "running" and saga.deadline is not None
    assert [s["state"] for s in saga.steps] == [
        "running",
        "pending",
        "pending",
        "pending",
    ]


def test_replies_move_the_saga_to_completion() -> None:
    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)

    answer(outstanding(saga), total=700)
    answer(outstanding(saga))
    debit = outstanding(saga)
    assert debit.payload["amount"] == 700
    answer(debit, entry_id=1)
    answer(outstanding(saga))

    saga.refresh_from_db()
    assert (saga.state, saga.outstanding_command_id, saga.finished_at is not None) == (
        "completed",
        None,
        True,
    )
    kinds = list(saga.events.values_list("kind", flat=True))
    assert (
        kinds.count("command_sent") == 4 and kinds.count("reply") == 4 and kinds[-1] == "completed"
    )


def test_a_reply_to_an_older_attempt_is_recorded_and_ignored() -> None:
    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    first = outstanding(saga)
    Saga.objects.filter(pk=saga.pk).update(deadline=timezone.now() - timedelta(seconds=1))

    assert saga_sweep() == 1
    second = outstanding(saga)
    assert second.id != first.id and second.correlation.attempt == 2

    answer(first, total=700)  # stale: not the outstanding command

    saga.refresh_from_db()
    assert saga.current_step == 0 and saga.outstanding_command_id == second.id
    assert saga.events.filter(kind="stale_reply").count() == 1
    answer(second, total=700)
    saga.refresh_from_db()
    assert saga.current_step == 1


def test_a_duplicate_reply_is_applied_once() -> None:
    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    command = outstanding(saga)
    reply = wire(new_reply(command, Reply(ok=True, result={"total": 700}), source="order"))

    results = [consumed(reply) for _ in range(2)]

    assert results == ["handled", "duplicate"]
    assert SagaEvent.objects.filter(saga=saga, kind="reply").count() == 1


def test_concurrent_replies_for_one_saga_are_serialised() -> None:
    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    command = outstanding(saga)
    # Two different replies to the same command (e.g. the participant answered twice).
    replies = [
        wire(new_reply(command, Reply(ok=True, result={"total": 700}), source="order"))
        for _ in range(2)
    ]

    def deliver(raw: str) -> str:
        try:
            return consumed(raw)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(deliver, replies))

    saga.refresh_from_db()
    assert saga.current_step == 1  # moved once, not twice
    assert SagaEvent.objects.filter(saga=saga, kind="reply").count() == 1
    assert SagaEvent.objects.filter(saga=saga, kind="stale_reply").count() == 1
    assert OutboxMessage.objects.filter(type="customer.verify").count() == 1


def test_the_sweep_times_out_and_compensates(settings: SettingsWrapper) -> None:
    settings.SAGA_MAX_ATTEMPTS = 1
    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    Saga.objects.filter(pk=saga.pk).update(deadline=timezone.now() - timedelta(seconds=1))

    saga_sweep()

    compensation = outstanding(saga)
    assert compensation.type == "order.reject"  # its creation may have happened: undo it
    assert compensation.payload["reason"] == "timeout"
    answer(compensation)
    saga.refresh_from_db()
    assert (saga.state, saga.reason) == ("rejected", "timeout")


def test_an_operator_can_retry_a_failed_saga(settings: SettingsWrapper) -> None:
    settings.SAGA_FAIL_AFTER = 1
    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    answer(outstanding(saga), total=700)
    answer(outstanding(saga))
    answer(outstanding(saga), entry_id=1)
    Saga.objects.filter(pk=saga.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    saga_sweep()  # approve got no answer: past fail_after
    saga.refresh_from_db()
    assert saga.state == "failed" and saga.deadline is None
    assert saga_sweep() == 0  # failed sagas wait for an operator

    saga_operator_action(saga_id=saga.id, action="retry", operator="op")

    saga.refresh_from_db()
    assert saga.state == "running" and saga.deadline is not None
    assert saga.events.filter(kind="operator", detail__action="retry").exists()
    answer(outstanding(saga))
    saga.refresh_from_db()
    assert saga.state == "completed"


def test_cancelling_an_order_never_placed_is_404() -> None:
    from common.api.errors import NotFoundError

    with pytest.raises(NotFoundError):
        cancellation_start(actor=OPERATOR, order_id=uuid.uuid4())


def test_a_reply_for_no_saga_is_dead_lettered() -> None:
    from common.inbox.models import DeadLetter

    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    command = outstanding(saga).model_copy(
        update={
            "correlation": outstanding(saga).correlation.model_copy(
                update={"saga_id": uuid.uuid4()}
            )
        }
    )

    assert answer(command) == "dead"
    assert DeadLetter.objects.get().reason == "unroutable"


def test_a_genuine_reply_of_another_type_quoting_the_outstanding_command_is_forged() -> None:
    from common.inbox.models import DeadLetter

    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    create = outstanding(saga)  # order.create_pending is outstanding
    # The order service answering, with its own key, a command of another type of its own.
    other = create.model_copy(update={"type": "order.approve"})

    assert answer(other) == "dead"

    assert DeadLetter.objects.get().reason == "forged"
    saga.refresh_from_db()
    assert (saga.current_step, saga.outstanding_command_id) == (0, create.id)
    assert not saga.events.filter(kind="reply").exists()
