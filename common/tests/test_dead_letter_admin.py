"""The dead-letter admin names each letter by its envelope (not the Celery task) and its
message type, and a retry that cannot hand a letter back says why."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from common.inbox.models import DeadLetter
from common.outbox.models import OutboxMessage
from common.tests.support import debit_command, funded_account
from common.tests.test_inbox import deliver

pytestmark = pytest.mark.django_db(transaction=True)
LIST = "/account/admin/inbox/deadletter/"


def test_a_forged_letter_shows_the_envelope_id_and_type_it_claims(admin_operator: Client) -> None:
    command = debit_command(uuid.uuid4(), 1)
    deliver(command.model_dump_json())  # unsigned: forged, parked before it is believed

    page = admin_operator.get(LIST).content.decode()

    assert str(command.id) in page
    assert "account.debit (claimed)" in page
    assert DeadLetter.objects.get().message_id != str(command.id)  # the task's id is stored


def test_a_letter_parked_by_the_consumer_is_named_by_its_envelope(admin_operator: Client) -> None:
    command = debit_command(uuid.uuid4(), 1)
    body = json.dumps([[command.model_dump_json()], {}, {}])  # a Celery message body
    letter = DeadLetter.objects.create(
        reason="content_type", error="x", raw_body=body, message_id="task-1", type="inbox.consume"
    )

    page = admin_operator.get(f"{LIST}{letter.pk}/change/").content.decode()

    assert str(command.id) in page and "account.debit (claimed)" in page


def test_retry_says_why_a_letter_cannot_be_handed_back(admin_operator: Client) -> None:
    deliver(debit_command(uuid.uuid4(), 1).model_dump_json())  # forged
    letter = DeadLetter.objects.get()

    page = admin_operator.post(
        LIST, {"action": "retry", "_selected_action": [letter.pk]}, follow=True
    ).content.decode()

    assert "Handed 0" not in page
    assert f"Dead letter {letter.pk} not handed back: its body is no message" in page
    assert "forged" in page
    assert not OutboxMessage.objects.exists()


def test_retry_hands_a_valid_letter_back_once(
    admin_operator: Client, settings: SettingsWrapper
) -> None:
    settings.MESSAGE_HANDLERS = "common.tests.test_inbox.FAILING_HANDLERS"
    settings.INBOX_MAX_RETRIES = 0
    deliver(debit_command(funded_account(500), 200))
    letter = DeadLetter.objects.get()
    chosen = {"action": "retry", "_selected_action": [letter.pk]}

    first = admin_operator.post(LIST, chosen, follow=True).content.decode()
    again = admin_operator.post(LIST, chosen, follow=True).content.decode()

    assert "Handed 1 message(s) back to the queue." in first
    assert "not handed back: it was handed back already" in again
    assert OutboxMessage.objects.filter(type="account.debit").count() == 1
