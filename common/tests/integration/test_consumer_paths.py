"""Every path through a worker handles a message, parks it, or gives it back to the broker:
none is held unacknowledged, none is acknowledged without being handled or parked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from django.db import connection, transaction

from account.accounts.models import Account, LedgerEntry
from common.inbox.models import DeadLetter
from common.tests.integration.conftest import Processes
from common.tests.integration.faulty_hooks import FAULTS_KEY
from common.tests.integration.test_poison import celery_message, raw_message
from common.tests.integration.test_relay_faults import _waiting_on_lock, private_redis
from common.tests.support import (
    debit_command,
    funded_account,
    held,
    registered_event,
    wait_until,
    wire,
)
from tests.e2e.gateways import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def dead_letters_refused() -> Iterator[None]:
    """Every write to the dead-letter table fails, as it would with PostgreSQL down."""
    table = DeadLetter._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_dead_letter() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'the dead-letter table is unavailable'; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER refuse_dead_letter BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_dead_letter()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER refuse_dead_letter ON {table}")
            cursor.execute("DROP FUNCTION refuse_dead_letter()")


def test_poison_that_cannot_be_parked_goes_back_and_the_worker_keeps_consuming(
    processes: Processes, queue: redis.Redis
) -> None:
    customers = [uuid.uuid4() for _ in range(3)]
    poison = [
        raw_message(body=b"{not json", content_type="application/json"),  # Celery's consumer
        celery_message("{not an envelope"),  # inbox.consume
    ]
    with dead_letters_refused():
        for item in [poison[0], celery_message(wire(registered_event(customers[0])))]:
            queue.lpush("account", item)
        for item in [poison[1], celery_message(wire(registered_event(customers[1])))]:
            queue.lpush("account", item)
        processes.worker()

        # Both good messages behind the poison are handled: the worker did not stop.
        wait_until(lambda: Account.objects.filter(customer_id__in=customers[:2]).count() == 2)
        assert not DeadLetter.objects.exists()
        queue.lpush("account", celery_message(wire(registered_event(customers[2]))))
        wait_until(lambda: Account.objects.filter(customer_id=customers[2]).exists())

    # The database is back: both poison messages, kept on the broker, are parked now.
    wait_until(lambda: DeadLetter.objects.count() == 2, timeout_s=30)
    assert sorted(DeadLetter.objects.values_list("reason", flat=True)) == [
        "undecodable",
        "undecodable",
    ]


def test_a_retry_the_broker_refuses_to_take_stays_on_the_broker(
    processes: Processes, tmp_path: Path
) -> None:
    customer_id = funded_account(1000)
    command = debit_command(customer_id, 100)
    with private_redis(tmp_path, free_port()) as server:
        env = {"REDIS_URL": server.url, "CELERY_VISIBILITY_TIMEOUT": "3"}
        worker = processes.worker(extra_env=env)
        with transaction.atomic():
            Account.objects.select_for_update().get(pk=customer_id)
            server.client.lpush("account", celery_message(wire(command)))
            wait_until(lambda: server.client.llen("account") == 0 and _waiting_on_lock())
            # Redis takes no new data (full, under noeviction); then the handler fails.
            server.client.config_set("maxmemory", 1)
            _terminate_lock_waiters()
        wait_until(lambda: "requeueing the message" in _log(tmp_path), timeout_s=20)
        assert worker.poll() is None  # the worker lives on
        server.client.config_set("maxmemory", 0)

        wait_until(lambda: LedgerEntry.objects.filter(kind="charge").exists(), timeout_s=60)
        assert Account.objects.get(pk=customer_id).balance == 900
        assert worker.poll() is None


def test_an_ack_that_fails_while_redis_is_down_does_not_stop_the_worker(
    processes: Processes, tmp_path: Path
) -> None:
    """A handler commits while Redis is down, so its ack fails. The worker lets go of the
    message anyway and takes the next one once Redis is back (with prefetch 1, kombu's failed ack
    left the message counted as in hand and the worker idle for good)."""
    customer_id = funded_account(1000)
    first, second = debit_command(customer_id, 100), debit_command(customer_id, 200)
    with private_redis(tmp_path, free_port()) as server:
        worker = processes.worker(extra_env={"REDIS_URL": server.url})
        with transaction.atomic():
            Account.objects.select_for_update().get(pk=customer_id)
            server.client.lpush("account", celery_message(wire(first)))
            wait_until(lambda: server.client.llen("account") == 0 and _waiting_on_lock())
            server.stop()  # the handler goes on once this transaction ends, and commits
        wait_until(
            lambda: LedgerEntry.objects.filter(kind="charge").count() == 1,
            timeout_s=20,
            every_s=0.01,
        )
        # Its ack, right after the commit, finds Redis gone; back at once (empty), so that
        # nothing else the worker does meets the outage and makes it reconnect.
        server.start()
        server.client.lpush("account", celery_message(wire(second)))

        wait_until(lambda: LedgerEntry.objects.filter(kind="charge").count() == 2, timeout_s=30)
        assert Account.objects.get(pk=customer_id).balance == 700
        assert worker.poll() is None
    assert "could not acknowledge message" in _log(tmp_path)


def _terminate_lock_waiters() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchall(), "the worker was not waiting"


def _log(directory: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in directory.glob("worker-*.log"))


def test_a_failure_around_the_task_requeues_its_message(
    processes: Processes, queue: redis.Redis, tmp_path: Path
) -> None:
    customer_id = uuid.uuid4()
    queue.set(FAULTS_KEY, 2)  # the hook fails on the first two tries
    queue.lpush("account", celery_message(wire(registered_event(customer_id))))

    processes.worker(extra_args=("--include", "common.tests.integration.faulty_hooks"))

    # Not dropped (Celery's reject without requeue would have): back on the queue, then handled.
    wait_until(lambda: Account.objects.filter(customer_id=customer_id).exists(), timeout_s=30)
    assert _log(tmp_path).count("failed outside its own handling") == 2
    wait_until(lambda: held(queue, "account") == 0)
    assert queue.llen("account") == 0
