"""The relay under crashes, races and a broker outage: nothing lost, duplicates only as
at-least-once allows, and the inbox turns duplicates into one effect."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import redis
from django.db import connection, transaction

from account.accounts.models import Account, LedgerEntry
from common.inbox.models import InboxMessage
from common.outbox.models import OutboxMessage
from common.outbox.replay import epoch_key
from common.tests.integration.conftest import Processes
from common.tests.support import debit_command, funded_account, put, queued, wait_until
from tests.e2e.gateways import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def pending() -> int:
    return OutboxMessage.objects.filter(status="pending").count()


def claimed_by_another_session() -> bool:
    """True while some other session holds row locks on the outbox (a relay mid-batch)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()
              AND l.locktype = 'transactionid' AND a.state = 'idle in transaction'
            """
        )
        (count,) = cursor.fetchone()
    return bool(count)


def test_relay_killed_after_commit_before_publish_publishes_after_restart(
    processes: Processes, queue: redis.Redis
) -> None:
    command = debit_command(uuid.uuid4(), 10)
    relay = processes.relay()
    wait_until(lambda: queue.exists(epoch_key("account")))  # its first look at the broker done
    queue.execute_command("CLIENT", "PAUSE", "20000", "WRITE")  # the relay's publish will hang
    try:
        put(command)
        wait_until(claimed_by_another_session)  # rows claimed, publish not done
        processes.kill(relay)
    finally:
        queue.execute_command("CLIENT", "UNPAUSE")

    assert OutboxMessage.objects.get().status == "pending"
    processes.relay()

    wait_until(lambda: OutboxMessage.objects.get().status == "sent")
    assert str(command.id) in [e["id"] for e in queued(queue, "account")]


def test_relay_killed_after_publish_before_marking_sent_delivers_twice_applies_once(
    processes: Processes, queue: redis.Redis
) -> None:
    customer_id = funded_account(1000)
    command = debit_command(customer_id, 400)
    put(command)

    with commit_held():  # the relay publishes, then its COMMIT (which marks the rows) waits
        relay = processes.relay()
        wait_until(lambda: queue.llen("account") == 1)
        processes.kill(relay)
        abort_held_commits()  # the server side of the killed relay dies too, before committing

    assert OutboxMessage.objects.get().status == "pending"
    processes.relay()
    wait_until(lambda: OutboxMessage.objects.filter(type="account.debit", status="sent").exists())
    assert [e["id"] for e in queued(queue, "account")] == [str(command.id)] * 2  # delivered twice

    processes.worker()

    wait_until(lambda: queue.llen("account") == 0 and InboxMessage.objects.exists())
    time.sleep(0.5)  # let the second copy be handled too
    assert Account.objects.get(pk=customer_id).balance == 600  # applied once
    assert LedgerEntry.objects.filter(kind="charge").count() == 1
    replies = OutboxMessage.objects.filter(type="account.debit.reply")
    assert replies.values("message_id").distinct().count() == 1


@contextmanager
def commit_held() -> Iterator[None]:
    """Make every commit that marks outbox rows wait (in a deferred trigger) until we let go."""
    table = OutboxMessage._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$"
        )
        cursor.execute(
            f"CREATE CONSTRAINT TRIGGER hold_commit AFTER UPDATE ON {table} "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit()"
        )
        cursor.execute("SELECT pg_advisory_lock(4242)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(4242)")
            cursor.execute(f"DROP TRIGGER hold_commit ON {table}")
            cursor.execute("DROP FUNCTION hold_commit()")


def abort_held_commits() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event = 'advisory'"
        )
        assert cursor.fetchall(), "no relay commit was held"


def test_two_relays_racing_over_ten_thousand_rows_lose_none(
    processes: Processes, queue: redis.Redis
) -> None:
    commands = [debit_command(uuid.uuid4(), 1) for _ in range(10_000)]
    for start in range(0, len(commands), 500):
        put(*commands[start : start + 500])

    processes.relay()
    processes.relay()

    wait_until(lambda: pending() == 0, timeout_s=60)
    published = [e["id"] for e in queued(queue, "account")]
    duplicates = len(published) - len(set(published))
    print(f"two relays, 10,000 rows: {len(published)} published, {duplicates} duplicates")
    assert set(published) == {str(c.id) for c in commands}
    assert duplicates == 0  # SKIP LOCKED: no row is claimed twice while its claim is held


@contextmanager
def private_redis(tmp_path: Path, port: int) -> Iterator[PrivateRedis]:
    """A Redis of our own that a test may stop and start (never the shared one)."""
    server = PrivateRedis(tmp_path, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PrivateRedis:
    def __init__(self, directory: Path, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.client = redis.Redis(port=port)
        server = shutil.which("redis-server")
        assert server is not None
        self.command = [
            *(server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", str(directory), "--daemonize", "no"),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        wait_until(lambda: _pings(self.client))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def test_redis_down_past_the_old_dead_row_horizon_kills_nothing_and_keeps_the_order(
    processes: Processes, tmp_path: Path
) -> None:
    # Three attempts 0.05-0.1 s apart: under the old rule every row was dead within a second.
    horizon = {
        "OUTBOX_MAX_ATTEMPTS": "3",
        "OUTBOX_BACKOFF_BASE_S": "0.05",
        "OUTBOX_BACKOFF_CAP_S": "0.1",
        "OUTBOX_BROKER_RETRY_CAP_S": "0.5",
    }
    with private_redis(tmp_path, free_port()) as server:
        relay = processes.relay(extra_env={"REDIS_URL": server.url, **horizon})
        first = debit_command(uuid.uuid4(), 1)
        put(first)
        wait_until(lambda: server.client.llen("account") == 1)

        server.stop()
        commands = [debit_command(uuid.uuid4(), n + 1) for n in range(200)]
        for start in range(0, 200, 20):
            put(*commands[start : start + 20])
        time.sleep(4)  # the relay fails over and over, and holds every row as it was
        assert pending() == 200
        assert OutboxMessage.objects.filter(status="dead").count() == 0
        assert not OutboxMessage.objects.filter(attempts__gt=0, status="pending").exists()

        server.start()
        wait_until(lambda: pending() == 0, timeout_s=30)  # no operator needed

        # The restarted Redis kept nothing: the relay noticed and sent the first message again.
        published = [e["id"] for e in queued(server.client, "account")]
        assert published == [str(c.id) for c in [first, *commands]]  # each once, in commit order
        assert OutboxMessage.objects.filter(status="dead").count() == 0
        processes.kill(relay)
    log = (tmp_path / "relay-0.log").read_text()
    assert log.count("broker unreachable") == 1
    assert "broker reachable again" in log


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_a_whole_worker_killed_mid_handler_is_redelivered_after_the_visibility_timeout(
    processes: Processes, queue: redis.Redis
) -> None:
    customer_id = funded_account(1000)
    command = debit_command(customer_id, 100)
    short = {"CELERY_VISIBILITY_TIMEOUT": "3"}
    worker = processes.worker(extra_env=short)
    # The solo pool: the handler runs in the worker process itself, which holds the message.
    assert psutil.Process(worker.pid).children() == []

    with transaction.atomic():
        Account.objects.select_for_update().get(pk=customer_id)
        put_elsewhere(command)
        processes.relay()
        wait_until(lambda: queue.llen("account") == 0 and _waiting_on_lock())
        processes.kill(worker)  # nobody acknowledges or requeues

    processes.worker(extra_env=short)
    wait_until(lambda: LedgerEntry.objects.filter(kind="charge").exists(), timeout_s=60)
    assert Account.objects.get(pk=customer_id).balance == 900
    assert LedgerEntry.objects.filter(kind="charge").count() == 1


def test_one_message_delivered_twice_at_once_to_two_workers_has_one_effect(
    processes: Processes, queue: redis.Redis
) -> None:
    customer_id = funded_account(1000)
    command = debit_command(customer_id, 300)
    processes.worker()
    processes.worker()

    with transaction.atomic():
        Account.objects.select_for_update().get(pk=customer_id)
        put_elsewhere(command)
        processes.relay()
        wait_until(
            lambda: (
                queue.llen("account") == 0 and OutboxMessage.objects.filter(status="sent").exists()
            )
        )
        # Publish the same message again, as a relay crash would: both workers now hold a copy.
        put_again(command)
        wait_until(lambda: queue.llen("account") == 0 and _waiting_on_lock(2))

    wait_until(lambda: OutboxMessage.objects.filter(type="account.debit.reply").exists())
    time.sleep(0.5)
    assert Account.objects.get(pk=customer_id).balance == 700
    assert LedgerEntry.objects.filter(kind="charge").count() == 1
    assert (
        OutboxMessage.objects.filter(type="account.debit.reply")
        .values("message_id")
        .distinct()
        .count()
        == 1
    )


def put_elsewhere(command: object) -> None:
    """Write to the outbox from another connection, so it commits while this test holds a lock."""
    import threading

    from django.db import connections

    def write() -> None:
        try:
            put(command)  # type: ignore[arg-type]
        finally:
            connections.close_all()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()


def put_again(command: object) -> None:
    put_elsewhere(command)


def _waiting_on_lock(sessions: int = 1) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else frozen for this transaction
        cursor.execute(
            """
            SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
            """
        )
        (count,) = cursor.fetchone()
    return count >= sessions
