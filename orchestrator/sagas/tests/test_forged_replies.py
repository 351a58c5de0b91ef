"""Forged replies on the orchestrator queue, quoting a real outstanding command id (visible to
anyone who can watch Flower or Redis), consumed by a real orchestrator worker: each is a dead
letter ``forged`` and the saga does not move; the genuine replies still move it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis

from common.inbox.models import DeadLetter
from common.messaging.contract import Reply
from common.messaging.envelope import Envelope, new_reply
from common.outbox.models import OutboxMessage
from common.testing import OPERATOR
from common.tests.integration.conftest import Processes
from common.tests.support import forged_signed, push, signed, wait_until, wire
from orchestrator.sagas.models import Saga
from orchestrator.sagas.services import checkout_start

pytestmark = pytest.mark.django_db(transaction=True)


def outstanding(saga: Saga) -> Envelope:
    saga.refresh_from_db()
    assert saga.outstanding_command_id is not None
    row = OutboxMessage.objects.get(message_id=saga.outstanding_command_id)
    return Envelope.model_validate(row.envelope)


def reply(command: Envelope, *, source: str, **result: Any) -> dict[str, Any]:
    return new_reply(command, Reply(ok=True, result=result), source=source).to_json_dict()


def at_step(saga: Saga, index: int) -> bool:
    saga.refresh_from_db()
    return saga.current_step == index


def test_forged_replies_quoting_the_outstanding_command_never_move_the_saga(
    processes: Processes, queue: redis.Redis
) -> None:
    # Given a checkout waiting for order.create_pending
    saga = checkout_start(
        actor=OPERATOR, customer_id=uuid.uuid4(), items=[{"menu_item_id": 1, "quantity": 2}]
    )
    create = outstanding(saga)
    cheap = reply(create, source="order", total=1)  # would make the debit charge 1 yen
    forged_creates = [
        (json.dumps(cheap), "no signature"),
        (forged_signed(cheap), "does not verify"),
        # the customer service, with its own key, answering the order service's command
        (signed({**cheap, "source": "customer"}), "may be sent by order, not 'customer'"),
    ]
    push(queue, "orchestrator", *(raw for raw, _ in forged_creates))
    push(
        queue,
        "orchestrator",
        wire(new_reply(create, Reply(ok=True, result={"total": 700}), source="order")),
    )
    worker = processes.worker()
    wait_until(lambda: at_step(saga, 1), timeout_s=30)
    push(
        queue, "orchestrator", wire(new_reply(outstanding(saga), Reply(ok=True), source="customer"))
    )
    wait_until(lambda: at_step(saga, 2), timeout_s=30)

    # When forged debit replies quoting the outstanding debit arrive
    debit = outstanding(saga)
    assert debit.type == "account.debit" and debit.payload["amount"] == 700
    paid = reply(debit, source="account", entry_id=1, amount=700, balance=0)
    forged_debits = [
        (json.dumps(paid), "no signature"),
        (forged_signed(paid), "does not verify"),
        (forged_signed(paid, by="order"), "does not verify"),  # the order service's key
        # the account service's own reply to another of its commands, quoting this debit
        (signed({**paid, "type": "account.refund.reply"}), "awaits account.debit.reply"),
    ]
    push(queue, "orchestrator", *(raw for raw, _ in forged_debits))
    # (a stale genuine reply after them: once it is recorded, the worker has seen them all)
    push(queue, "orchestrator", wire(new_reply(create, Reply(ok=True), source="order")))
    wait_until(lambda: saga.events.filter(kind="stale_reply").exists(), timeout_s=30)

    # Then each is a dead letter "forged", and the saga still waits for the real debit
    letters = list(DeadLetter.objects.order_by("id"))
    expected = forged_creates + forged_debits
    assert [letter.reason for letter in letters] == ["forged"] * len(expected)
    for letter, (raw, why) in zip(letters, expected, strict=True):
        assert letter.raw_body == raw and why in letter.error
    saga.refresh_from_db()
    assert (saga.state, saga.current_step, saga.outstanding_command_id) == ("running", 2, debit.id)
    assert saga.data["total"] == 700
    assert not OutboxMessage.objects.filter(type="order.approve").exists()
    assert worker.poll() is None
