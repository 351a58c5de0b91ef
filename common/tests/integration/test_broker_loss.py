"""The broker loses what it held (FLUSHDB of its database, as a restart without persistence
would): the relays notice and publish it again, and every message is applied once."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from account.accounts.models import Account, LedgerEntry
from common.inbox.models import InboxMessage
from common.outbox.models import OutboxMessage
from common.tests.integration.conftest import Processes
from common.tests.support import (
    debit_command,
    funded_account,
    put,
    queued,
    registered_event,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

WATCHFUL = {"OUTBOX_EPOCH_CHECK_S": "0.2", "OUTBOX_REPLAY_WINDOW_S": "300"}


def charges() -> int:
    return LedgerEntry.objects.filter(kind="charge").count()


def test_events_and_commands_lost_with_the_broker_are_delivered_again_and_applied_once(
    processes: Processes, queue: redis.Redis
) -> None:
    customers = [funded_account(1000) for _ in range(10)]
    processes.relay(extra_env=WATCHFUL)
    worker = processes.worker()
    put(*[debit_command(c, 100) for c in customers])
    wait_until(lambda: charges() == 10)
    processes.kill(worker)  # from here on, messages wait on the queue

    newcomers = [uuid.uuid4() for _ in range(30)]
    put(*[registered_event(c) for c in newcomers])
    put(*[debit_command(c, 100) for c in customers])
    wait_until(lambda: len(queued(queue, "account")) == 40)

    queue.flushdb()  # the 30 events and 10 saga commands are gone from the broker
    processes.worker()

    wait_until(lambda: Account.objects.filter(customer_id__in=newcomers).count() == 30)
    wait_until(lambda: charges() == 20)
    wait_until(lambda: queue.llen("account") == 0)
    time.sleep(0.5)  # let any late copy be handled too
    assert charges() == 20  # the first ten, replayed as well, were dropped by the inbox
    assert {a.balance for a in Account.objects.filter(customer_id__in=customers)} == {800}
    assert InboxMessage.objects.count() == 50
    assert not OutboxMessage.objects.filter(status="dead").exists()


def test_recovery_of_a_ten_thousand_message_backlog(
    processes: Processes, queue: redis.Redis
) -> None:
    newcomers = [uuid.uuid4() for _ in range(10_000)]
    for start in range(0, len(newcomers), 500):
        put(*[registered_event(c) for c in newcomers[start : start + 500]])
    processes.relay(extra_env=WATCHFUL)
    wait_until(lambda: not OutboxMessage.objects.filter(status="pending").exists(), timeout_s=60)

    queue.flushdb()
    flushed = time.monotonic()
    wait_until(lambda: len(queued(queue, "account")) == 10_000, timeout_s=60, every_s=0.1)
    republished = time.monotonic() - flushed
    processes.worker()
    wait_until(lambda: Account.objects.count() == 10_000, timeout_s=300, every_s=0.2)
    applied = time.monotonic() - flushed

    print(
        f"10,000 events lost with the broker: on their queue again after {republished:.2f}s, "
        f"all applied (one worker) after {applied:.1f}s"
    )
    assert InboxMessage.objects.count() == 10_000
