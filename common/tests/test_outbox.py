"""Outbox write API and relay, in process, against the real PostgreSQL and Redis."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from celery import current_app
from django.db import transaction
from django.test import Client
from django.utils import timezone

from common.messaging.transport import (
    ENVELOPES_PER_TASK,
    BrokerUnavailable,
    Outgoing,
    Publisher,
)
from common.outbox.models import OutboxMessage
from common.outbox.relay import Relay, Wakeup
from common.outbox.services import (
    OutsideTransaction,
    notify_channel,
    outbox_prune,
    outbox_put,
    outbox_requeue,
)
from common.tests.support import (
    broker,
    debit_command,
    keys_of,
    put,
    queued,
    registered_event,
)

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


def test_writing_outside_a_transaction_is_refused() -> None:
    with pytest.raises(OutsideTransaction):
        outbox_put(debit_command(uuid.uuid4(), 100), keys=keys_of("orchestrator"))

    assert OutboxMessage.objects.count() == 0


def test_a_rolled_back_change_never_publishes(relay: Relay, clean_broker: redis.Redis) -> None:
    class Boom(Exception):
        pass

    def change_that_fails() -> None:
        with transaction.atomic():
            outbox_put(debit_command(uuid.uuid4(), 100), keys=keys_of("orchestrator"))
            raise Boom

    with pytest.raises(Boom):
        change_that_fails()

    assert relay.relay_batch() == 0
    assert OutboxMessage.objects.count() == 0
    assert clean_broker.llen("account") == 0


def test_committed_rows_are_published_in_order_and_marked_sent(
    relay: Relay, clean_broker: redis.Redis
) -> None:
    commands = [debit_command(uuid.uuid4(), n + 1) for n in range(5)]
    for command in commands:
        put(command)

    assert relay.relay_batch() == 5

    assert [e["id"] for e in queued(clean_broker, "account")] == [str(c.id) for c in commands]
    assert set(OutboxMessage.objects.values_list("status", flat=True)) == {"sent"}
    assert relay.relay_batch() == 0


def test_an_event_goes_to_every_subscriber() -> None:
    event = registered_event()

    put(event)

    rows = OutboxMessage.objects.filter(message_id=event.id)
    assert {row.destination for row in rows} == {"account"}
    assert rows[0].envelope["destination"] == "account"


def test_commit_wakes_the_relay_and_rollback_does_not() -> None:
    wakeup = Wakeup(notify_channel("account"))
    assert wakeup.wait(0.01) is False  # connects and listens

    def rolled_back() -> None:
        try:
            with transaction.atomic():
                outbox_put(debit_command(uuid.uuid4(), 1), keys=keys_of("orchestrator"))
                raise RuntimeError
        except RuntimeError:
            pass

    thread = threading.Thread(target=rolled_back)
    thread.start()
    thread.join()
    assert wakeup.wait(0.3) is False

    thread = threading.Thread(target=lambda: put(debit_command(uuid.uuid4(), 1)))
    thread.start()
    thread.join()
    assert wakeup.wait(2.0) is True
    wakeup.close()


def test_an_unreachable_broker_holds_the_batch_without_counting_attempts() -> None:
    unreachable = Publisher(current_app, broker_url="redis://127.0.0.1:1/0")
    relay = Relay(unreachable, max_attempts=3)
    put(debit_command(uuid.uuid4(), 1))
    before = OutboxMessage.objects.get()

    for _ in range(5):  # more failures than the row has attempts
        with pytest.raises(BrokerUnavailable):
            relay.relay_batch()

    row = OutboxMessage.objects.get()
    assert (row.status, row.attempts, row.last_error) == ("pending", 0, "")
    assert row.available_at == before.available_at  # not backed off: first in line when back


def test_a_row_redis_refuses_on_its_own_backs_off_then_is_dead(
    relay: Relay, clean_broker: redis.Redis
) -> None:
    clean_broker.set("order", "not a list")  # every push to this queue is refused (WRONGTYPE)
    put(debit_command(uuid.uuid4(), 1))
    stuck = OutboxMessage.objects.create(
        message_id=uuid.uuid4(), type="order.x", destination="order", envelope={"id": "x"}
    )
    put(debit_command(uuid.uuid4(), 2))
    relay.max_attempts = 3

    for attempt in range(1, 4):
        assert relay.relay_batch() == (3 if attempt == 1 else 1)
        row = OutboxMessage.objects.get(pk=stuck.pk)
        assert row.attempts == attempt
        assert "WRONGTYPE" in row.last_error
        if attempt < 3:
            assert row.status == "pending"
            assert row.available_at > timezone.now()  # backing off: not claimable yet
            assert relay.relay_batch() == 0
            OutboxMessage.objects.filter(pk=stuck.pk).update(available_at=timezone.now())

    assert OutboxMessage.objects.get(pk=stuck.pk).status == "dead"
    assert [e["amount"] for e in (p["payload"] for p in queued(clean_broker, "account"))] == [1, 2]
    assert OutboxMessage.objects.filter(destination="account", status="sent").count() == 2


def test_requeue_revives_dead_rows(relay: Relay, clean_broker: redis.Redis) -> None:
    put(debit_command(uuid.uuid4(), 1))
    OutboxMessage.objects.update(status="dead", attempts=12, last_error="boom")

    assert outbox_requeue() == 1

    row = OutboxMessage.objects.get()
    assert (row.status, row.attempts, row.last_error) == ("pending", 0, "")
    assert relay.relay_batch() == 1
    assert clean_broker.llen("account") == 1


def test_prune_removes_only_old_sent_rows_in_batches(relay: Relay) -> None:
    for n in range(7):
        put(debit_command(uuid.uuid4(), n + 1))
    relay.relay_batch()
    put(debit_command(uuid.uuid4(), 99))  # pending: never pruned
    old = list(OutboxMessage.objects.filter(status="sent").values_list("pk", flat=True)[:5])
    OutboxMessage.objects.filter(pk__in=old).update(sent_at=timezone.now() - timedelta(days=2))

    assert outbox_prune(batch_size=2) == 5

    assert OutboxMessage.objects.filter(status="sent").count() == 2
    assert OutboxMessage.objects.filter(status="pending").count() == 1


def test_metrics_report_the_backlog(client: Client) -> None:
    put(debit_command(uuid.uuid4(), 1), debit_command(uuid.uuid4(), 2))

    body = client.get("/account/metrics").content.decode()

    assert "outbox_pending 2.0" in body
    assert "outbox_oldest_pending_age_seconds" in body
    assert "outbox_dead_rows 0.0" in body


def test_housekeeping_prunes_every_service_from_the_orchestrators_beat() -> None:
    from common.inbox.tasks import prune
    from common.messaging.celery import housekeeping_schedule
    from common.messaging.routing import SERVICES

    schedule = housekeeping_schedule()
    put(debit_command(uuid.uuid4(), 1))
    OutboxMessage.objects.update(status="sent", sent_at=timezone.now() - timedelta(days=3))

    result: dict[str, int] = prune.apply().get()

    assert {entry["options"]["queue"] for entry in schedule.values()} == set(SERVICES)
    assert {entry["task"] for entry in schedule.values()} == {"housekeeping.prune"}
    assert result["outbox"] == 1
    assert OutboxMessage.objects.count() == 0


def test_a_queues_envelopes_travel_together_in_order_and_a_backlog_is_noticed(
    clean_broker: redis.Redis,
) -> None:
    publisher = Publisher(current_app)
    outgoing = [
        Outgoing(
            queue="order" if n % 5 == 0 else "account",
            message_id=str(uuid.uuid4()),
            type="t",
            envelope_json=json.dumps({"id": str(n)}),
        )
        for n in range(ENVELOPES_PER_TASK + 10)
    ]

    publisher.publish(outgoing)
    assert not publisher.backlogged  # both queues were empty

    account = [o for o in outgoing if o.queue == "account"]
    assert clean_broker.llen("account") == 2  # 24 envelopes: 20, then 4
    assert [e["id"] for e in queued(clean_broker, "account")] == [
        json.loads(o.envelope_json)["id"] for o in account
    ]
    assert clean_broker.llen("order") == 1
    publisher.publish(outgoing[:1])
    assert publisher.backlogged  # the order queue still held what its worker had not taken
