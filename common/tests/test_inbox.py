"""Inbox: each message applied once, replies stored and re-sent, bad messages dead-lettered."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY
from pytest_django.fixtures import Settings as SettingsWrapper

from account.accounts.handlers import HANDLERS as ACCOUNT_HANDLERS
from account.accounts.models import Account, LedgerEntry
from common.inbox.models import DeadLetter, InboxMessage
from common.inbox.services import dead_letter_prune, dead_letter_retry, inbox_prune
from common.inbox.tasks import Parked, consume
from common.messaging.envelope import Envelope, decode
from common.messaging.keys import generate_key_pair
from common.outbox.models import OutboxMessage
from common.tests.support import (
    consumed,
    debit_command,
    funded_account,
    registered_event,
    signed,
    wire,
)

pytestmark = pytest.mark.django_db(transaction=True)


def deliver(envelope: Envelope | str) -> str:
    raw = envelope if isinstance(envelope, str) else wire(envelope)
    return consumed(raw)


def replies() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(type="account.debit.reply").order_by("id"))


def test_a_command_is_applied_once_and_a_duplicate_gets_the_same_reply() -> None:
    customer_id = funded_account(1000)
    command = debit_command(customer_id, 300)

    first = deliver(command)
    OutboxMessage.objects.update(status="sent", sent_at=timezone.now())  # the relay sent the reply
    second = deliver(command)

    assert (first, second) == ("handled", "duplicate")
    assert Account.objects.get(pk=customer_id).balance == 700
    assert LedgerEntry.objects.filter(kind="charge").count() == 1
    assert InboxMessage.objects.filter(pk=command.id).count() == 1
    [reply] = replies()
    assert reply.status == "pending"  # the stored reply, revived to be sent again
    assert reply.destination == "orchestrator"
    assert reply.envelope["correlation"]["in_reply_to"] == str(command.id)
    assert reply.envelope["payload"]["ok"] is True
    assert reply.envelope["headers"]["causation_id"] == str(command.id)


def test_a_business_failure_is_a_failure_reply_and_changes_nothing() -> None:
    customer_id = funded_account(100)
    command = debit_command(customer_id, 300)

    assert deliver(command) == "handled"

    [reply] = replies()
    assert reply.envelope["payload"]["ok"] is False
    assert reply.envelope["payload"]["reason"] == "insufficient_funds"
    assert Account.objects.get(pk=customer_id).balance == 100
    stored = InboxMessage.objects.get(pk=command.id).reply
    assert stored is not None
    assert stored["id"] == reply.envelope["id"]


def test_the_same_order_is_charged_once_even_under_a_new_message_id() -> None:
    customer_id = funded_account(1000)
    order_id = uuid.uuid4()

    deliver(debit_command(customer_id, 300, order_id))
    deliver(debit_command(customer_id, 300, order_id))

    assert Account.objects.get(pk=customer_id).balance == 700
    assert [r.envelope["payload"]["ok"] for r in replies()] == [True, True]


def test_customer_registered_opens_the_account_once() -> None:
    customer_id = uuid.uuid4()
    event = registered_event(customer_id)

    assert [deliver(event), deliver(event)] == ["handled", "duplicate"]
    assert Account.objects.get(pk=customer_id).balance == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "undecodable"),
        ("[" * 5000, "undecodable"),
        ("NOT_AN_ENVELOPE", "invalid_envelope"),
        ("UNKNOWN", "unknown_type"),
        ("BAD_PAYLOAD", "invalid_payload"),
    ],
)
def test_messages_that_can_never_be_handled_are_dead_lettered(raw: str, reason: str) -> None:
    # Signed by their sender after the change: each reaches the check it is meant to fail.
    good = debit_command(uuid.uuid4(), 1).model_dump(mode="json")
    raw = {
        "NOT_AN_ENVELOPE": signed({"id": "x", "source": "orchestrator"}),
        "UNKNOWN": signed({**good, "type": "account.teleport"}),
        "BAD_PAYLOAD": signed({**good, "payload": {"amount": -5}}),
    }.get(raw, raw)

    assert deliver(raw) == "dead"

    letter = DeadLetter.objects.get()
    assert letter.reason == reason
    assert letter.raw_body == raw
    assert letter.error
    assert InboxMessage.objects.count() == 0


NO_DEBIT_HANDLERS = {k: v for k, v in ACCOUNT_HANDLERS.items() if k != "account.debit"}


def test_a_message_this_service_has_no_handler_for_is_dead_lettered(
    settings: SettingsWrapper,
) -> None:
    settings.MESSAGE_HANDLERS = "common.tests.test_inbox.NO_DEBIT_HANDLERS"

    assert deliver(debit_command(uuid.uuid4(), 1)) == "dead"

    assert DeadLetter.objects.get().reason == "no_handler"


def test_a_task_call_of_the_wrong_shape_is_dead_lettered() -> None:
    assert consumed({"a": 1}, 2) == "dead"

    assert DeadLetter.objects.get().reason == "invalid_envelope"


def test_a_message_with_a_parked_envelope_ends_rejected_not_succeeded() -> None:
    """Acknowledged either way, but Flower shows the state Celery reports: a message that left a
    dead letter must not read SUCCESS there."""
    first = funded_account(1000)

    parked = consume.apply(args=(wire(debit_command(first, 100)), "{not an envelope"))
    handled = consume.apply(args=(wire(debit_command(first, 200)),))

    assert parked.state == "REJECTED" and isinstance(parked.result, Parked)
    assert parked.result.fates == "handled,dead"
    assert (handled.state, handled.result) == ("SUCCESS", "handled")
    assert Account.objects.get(pk=first).balance == 700
    assert DeadLetter.objects.get().reason == "undecodable"


def explode(message: Envelope, payload: Any) -> dict[str, Any] | None:
    Account.objects.create(customer_id=uuid.uuid4())  # a write that must be rolled back
    raise RuntimeError("handler bug")


FAILING_HANDLERS = {"account.debit": explode}


def test_an_unexpected_error_is_retried_then_dead_lettered(settings: SettingsWrapper) -> None:
    settings.MESSAGE_HANDLERS = "common.tests.test_inbox.FAILING_HANDLERS"
    settings.INBOX_MAX_RETRIES = 2
    command = debit_command(uuid.uuid4(), 1)

    assert deliver(command) == "dead"

    letter = DeadLetter.objects.get()
    assert letter.reason == "handler_error"
    assert "RuntimeError: handler bug" in letter.error
    assert letter.message_id == str(command.id)
    assert Account.objects.count() == 0  # every attempt rolled back
    assert InboxMessage.objects.count() == 0


CALLS: list[str] = []


def explode_with_value(message: Envelope, payload: Any) -> Any:
    CALLS.append(message.type)
    Account.objects.create(customer_id=uuid.uuid4())
    raise ValueError(f"{message.type} {message.id} carries no saga id")


def malformed(message: Envelope, payload: Any) -> Any:
    CALLS.append(message.type)
    return uuid.UUID(message.headers["saga"])  # KeyError: the sender left it out


@pytest.mark.parametrize(
    ("handler", "error"), [(malformed, "KeyError: 'saga'"), (explode_with_value, "ValueError")]
)
def test_a_permanent_error_is_dead_lettered_at_once_with_its_reason(
    settings: SettingsWrapper, handler: Any, error: str
) -> None:
    settings.MESSAGE_HANDLERS = "common.tests.test_inbox.PERMANENT_HANDLERS"
    settings.INBOX_MAX_RETRIES = 8
    PERMANENT_HANDLERS["account.debit"] = handler
    CALLS.clear()
    command = debit_command(uuid.uuid4(), 1)

    assert deliver(command) == "dead"

    assert CALLS == ["account.debit"]  # tried once, not once per retry
    letter = DeadLetter.objects.get()
    assert (letter.reason, letter.message_id) == ("handler_error", str(command.id))
    assert error in letter.error
    assert Account.objects.count() == 0  # its writes rolled back


PERMANENT_HANDLERS: dict[str, Any] = {}


def test_a_retried_dead_letter_goes_back_to_this_services_queue(settings: SettingsWrapper) -> None:
    settings.MESSAGE_HANDLERS = "common.tests.test_inbox.FAILING_HANDLERS"
    settings.INBOX_MAX_RETRIES = 0
    customer_id = funded_account(500)
    command = debit_command(customer_id, 200)
    deliver(command)
    settings.MESSAGE_HANDLERS = "account.accounts.handlers.HANDLERS"  # the fix is deployed

    assert dead_letter_retry(ids=[DeadLetter.objects.get().pk]) == 1
    assert dead_letter_retry(ids=[DeadLetter.objects.get().pk]) == 0  # once

    row = OutboxMessage.objects.get(type="account.debit")
    assert (row.destination, row.message_id) == ("account", command.id)
    assert deliver(json.dumps(row.envelope)) == "handled"
    assert Account.objects.get(pk=customer_id).balance == 300


def test_prune_forgets_old_message_ids_only() -> None:
    deliver(debit_command(uuid.uuid4(), 1))
    deliver(debit_command(uuid.uuid4(), 1))
    old = InboxMessage.objects.order_by("received_at").first()
    assert old is not None
    InboxMessage.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=30))

    assert inbox_prune() == 1
    assert InboxMessage.objects.count() == 1


def test_a_body_postgresql_cannot_store_as_text_is_kept_as_base64() -> None:
    assert deliver('{"id": "\x00"}') == "dead"

    letter = DeadLetter.objects.get()
    assert letter.raw_body.startswith("base64:")


def debit_unless_13(message: Envelope, payload: Any) -> Any:
    if payload.amount == 13:
        raise RuntimeError("13 is unlucky")
    return ACCOUNT_HANDLERS["account.debit"](message, payload)


def test_a_task_message_with_several_envelopes_applies_each_once_and_retries_only_the_failed(
    settings: SettingsWrapper,
) -> None:
    settings.MESSAGE_HANDLERS = "common.tests.test_inbox.UNLUCKY_HANDLERS"
    settings.INBOX_MAX_RETRIES = 2
    first, second = funded_account(1000), funded_account(1000)
    unlucky = debit_command(uuid.uuid4(), 13)
    batch = [debit_command(first, 100), unlucky, debit_command(second, 200)]

    consume.apply(args=tuple(wire(e) for e in batch)).get()

    assert Account.objects.get(pk=first).balance == 900
    assert Account.objects.get(pk=second).balance == 800
    assert LedgerEntry.objects.filter(kind="charge").count() == 2
    assert InboxMessage.objects.count() == 2
    assert len(replies()) == 2
    letter = DeadLetter.objects.get()  # retried alone, then parked
    assert (letter.reason, letter.message_id) == ("handler_error", str(unlucky.id))
    assert "13 is unlucky" in letter.error


UNLUCKY_HANDLERS = {**ACCOUNT_HANDLERS, "account.debit": debit_unless_13}


def test_a_stored_reply_re_sent_after_a_key_rotation_is_signed_with_the_new_key(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    customer_id = funded_account(1000)
    command = debit_command(customer_id, 300)
    deliver(command)
    # The account service rotates: its new public key is listed everywhere, then it restarts
    # with its new private key (copied next to the old ones here).
    signing, verify = tmp_path / "signing", tmp_path / "verify"
    shutil.copytree(settings.MESSAGE_SIGNING_KEYS_DIR, signing)
    shutil.copytree(settings.MESSAGE_VERIFY_KEYS_DIR, verify)
    generate_key_pair("account", signing_dir=signing, verify_dir=verify, kid="99999999T999999Z")
    settings.MESSAGE_SIGNING_KEYS_DIR, settings.MESSAGE_VERIFY_KEYS_DIR = signing, verify
    OutboxMessage.objects.update(status="sent", sent_at=timezone.now())

    assert deliver(command) == "duplicate"

    [row] = replies()
    envelope, _ = decode(json.dumps(row.envelope), receiver="orchestrator")
    assert envelope.signature is not None and envelope.signature.kid == "99999999T999999Z"
    assert row.envelope["id"] == InboxMessage.objects.get(pk=command.id).reply["id"]  # type: ignore[index]


def test_a_forged_message_is_counted() -> None:
    def forged() -> float:
        return REGISTRY.get_sample_value("inbox_dead_letters_total", {"reason": "forged"}) or 0.0

    before = forged()

    assert deliver(debit_command(uuid.uuid4(), 1).model_dump_json()) == "dead"  # unsigned

    assert forged() == before + 1
    assert DeadLetter.objects.get().reason == "forged"


def test_a_forged_dead_letter_is_never_handed_back_to_the_queue() -> None:
    deliver(debit_command(uuid.uuid4(), 1).model_dump_json())  # unsigned: forged

    assert dead_letter_retry(ids=[DeadLetter.objects.get().pk]) == 0
    assert not OutboxMessage.objects.exists()


def test_dead_letters_past_their_retention_are_pruned(settings: SettingsWrapper) -> None:
    settings.DEAD_LETTER_RETENTION_HOURS = 24
    for _ in range(3):
        deliver("{not an envelope")
    DeadLetter.objects.filter(
        pk__in=list(DeadLetter.objects.values_list("pk", flat=True)[:2])
    ).update(received_at=timezone.now() - timedelta(hours=25))

    assert dead_letter_prune(batch_size=1) == 2
    assert DeadLetter.objects.count() == 1
