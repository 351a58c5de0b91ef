"""Broker-loss detection and the replay, in process, against the real PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from celery import current_app
from django.core.management import call_command
from django.utils import timezone

from common.messaging.transport import Publisher
from common.outbox.management.commands.outbox_replay import parse_since
from common.outbox.models import OutboxMessage
from common.outbox.relay import Relay
from common.outbox.replay import EpochWatch, epoch_key
from common.tests.support import broker, debit_command, put, queued

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def clean_broker() -> Iterator[redis.Redis]:
    client = broker()
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def relay() -> Relay:
    return Relay(Publisher(current_app), batch_size=100)


def sent(relay: Relay, amounts: list[int]) -> list[str]:
    commands = [debit_command(uuid.uuid4(), amount) for amount in amounts]
    put(*commands)
    relay.relay_batch()
    return [str(c.id) for c in commands]


def test_a_flushed_broker_gets_every_row_of_the_window_again_in_order(
    relay: Relay, clean_broker: redis.Redis
) -> None:
    watch = EpochWatch(clean_broker, window_s=60)
    assert watch.check() == 0  # an empty outbox: the first look only writes the marker
    old = sent(relay, [1])
    OutboxMessage.objects.filter(message_id=old[0]).update(
        sent_at=timezone.now() - timedelta(minutes=5)  # before the window
    )
    recent = sent(relay, [2, 3, 4])
    assert watch.check() == 0  # nothing lost yet
    later = [debit_command(uuid.uuid4(), 5)]
    clean_broker.flushdb()
    put(*later)  # written after the loss, before the relay notices

    assert watch.check() == 3
    assert watch.check() == 0  # once

    relay.relay_batch()
    assert [e["id"] for e in queued(clean_broker, "account")] == [*recent, str(later[0].id)]
    assert clean_broker.get(epoch_key("account")) is not None


def test_a_marker_of_another_redis_run_replays_too(relay: Relay, clean_broker: redis.Redis) -> None:
    watch = EpochWatch(clean_broker, window_s=60)
    watch.check()
    ids = sent(relay, [1, 2])
    clean_broker.set(epoch_key("account"), "0123456789abcdef:before-restart")

    assert watch.check() == 2

    relay.relay_batch()
    assert [e["id"] for e in queued(clean_broker, "account")][-2:] == ids


def test_a_second_relay_of_the_service_does_not_replay_what_the_first_did(
    relay: Relay, clean_broker: redis.Redis
) -> None:
    first, second = EpochWatch(clean_broker), EpochWatch(clean_broker)
    first.check()
    sent(relay, [1])
    clean_broker.flushdb()

    assert first.check() == 1
    assert second.check() == 0


def test_the_watch_looks_at_most_every_interval(clean_broker: redis.Redis) -> None:
    watch = EpochWatch(clean_broker, every_s=60)
    assert watch.due()
    watch.check()
    assert not watch.due()
    watch.check_soon()
    assert watch.due()


def test_the_operator_command_replays_since_a_duration(
    relay: Relay, clean_broker: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = sent(relay, [1, 2])
    clean_broker.flushdb()

    call_command("outbox_replay", "--since", "10m")

    assert "2 rows" in capsys.readouterr().out
    relay.relay_batch()
    assert [e["id"] for e in queued(clean_broker, "account")] == ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", datetime(2026, 1, 1, 11, 58, 30, tzinfo=UTC)),
        ("15m", datetime(2026, 1, 1, 11, 45, tzinfo=UTC)),
        ("2h", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),
        ("PT15M", datetime(2026, 1, 1, 11, 45, tzinfo=UTC)),
        ("00:15:00", datetime(2026, 1, 1, 11, 45, tzinfo=UTC)),
        ("2026-01-01T09:30:00Z", datetime(2026, 1, 1, 9, 30, tzinfo=UTC)),
        ("2026-01-01T09:30:00", datetime(2026, 1, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_since_is_a_time_or_a_duration_back_from_now(text: str, expected: datetime) -> None:
    assert parse_since(text, now=datetime(2026, 1, 1, 12, 0, tzinfo=UTC)) == expected


@pytest.mark.parametrize("text", ["yesterday", "-5m", "0s", ""])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="neither"):
        parse_since(text)
