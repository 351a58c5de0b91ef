"""Each envelope's fate in ``inbox.consume``: handled, duplicate, parked or given back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.db import connection
from pytest_django.fixtures import Settings as SettingsWrapper

from common.inbox import tasks
from common.inbox.models import DeadLetter
from common.inbox.tasks import Fate, consume_one
from common.tests.support import debit_command, funded_account, wire

pytestmark = pytest.mark.django_db(transaction=True)


def fate(raw: str, *, retries: int = 0) -> Fate:
    return consume_one(raw, task_id="t", retries=retries).fate


@pytest.fixture
def dead_letters_refused() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'unavailable'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON inbox_dead_letter "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER refuse ON inbox_dead_letter")
        cursor.execute("DROP FUNCTION refuse()")


def test_a_good_envelope_is_handled_then_a_duplicate() -> None:
    raw = wire(debit_command(funded_account(100), 10))

    assert [fate(raw), fate(raw)] == [Fate.HANDLED, Fate.DUPLICATE]


def test_a_bad_envelope_is_parked() -> None:
    assert fate("{not an envelope") is Fate.PARKED
    assert DeadLetter.objects.get().reason == "undecodable"


def test_a_bad_envelope_that_cannot_be_parked_is_given_back(dead_letters_refused: None) -> None:
    outcome = consume_one("{not an envelope", task_id="t", retries=0)

    assert outcome.fate is Fate.GIVEN_BACK
    assert "unavailable" in str(outcome.error)


def test_a_failing_handler_is_given_back_until_the_retries_are_spent(
    settings: SettingsWrapper,
) -> None:
    settings.MESSAGE_HANDLERS = "common.tests.test_inbox.FAILING_HANDLERS"
    settings.INBOX_MAX_RETRIES = 2
    raw = wire(debit_command(uuid.uuid4(), 1))

    assert [fate(raw, retries=n) for n in range(3)] == [
        Fate.GIVEN_BACK,
        Fate.GIVEN_BACK,
        Fate.PARKED,
    ]
    assert DeadLetter.objects.get().reason == "handler_error"


def test_an_error_nobody_foresaw_gives_the_envelope_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw: str) -> None:
        raise RuntimeError("a bug in decoding")

    monkeypatch.setattr(tasks, "decode", broken)

    assert fate(wire(debit_command(uuid.uuid4(), 1))) is Fate.GIVEN_BACK
    assert not DeadLetter.objects.exists()


def test_a_given_back_retry_names_every_envelope_it_carries_for_flower() -> None:
    first, second = debit_command(uuid.uuid4(), 1), debit_command(uuid.uuid4(), 2)

    named = tasks._names((wire(first), wire(second), "{not json"))

    assert named == (
        f"<account.debit {first.id}> <account.debit {second.id}> <not-an-envelope str>"
    )
