"""A worker that Redis hands a message to and that dies before it records the message loses
nothing: the message waits in that worker's processing list until its lease runs out, then goes
back to its queue, and is handled once (events as well as commands)."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest
import redis

from account.accounts.models import Account, LedgerEntry
from common.inbox.models import InboxMessage
from common.messaging.redis_acl import broker_keys
from common.outbox.models import OutboxMessage
from common.tests.integration.conftest import Processes
from common.tests.integration.test_poison import celery_message
from common.tests.support import (
    debit_command,
    funded_account,
    held,
    registered_event,
    wait_until,
    wire,
)

pytestmark = pytest.mark.django_db(transaction=True)

# A lease of 3 s and a sweep every second (common.messaging.celery.transport_options).
SHORT = {"CELERY_VISIBILITY_TIMEOUT": "3"}

# The account worker's kombu keys: its unacknowledged messages, processing lists and leases.
ACCOUNT = broker_keys("account")


def waiting_for_a_message(client: redis.Redis) -> int:
    """How many consumers of this Redis database are blocked waiting on a queue."""
    db = client.connection_pool.connection_kwargs.get("db", 0)
    return sum(1 for c in client.client_list() if c["cmd"] == "blmove" and int(c["db"]) == int(db))


def test_messages_handed_to_frozen_workers_that_are_then_killed_are_handled_once(
    processes: Processes, queue: redis.Redis, tmp_path: Path
) -> None:
    customer_id = funded_account(1000)
    command = debit_command(customer_id, 300)
    newcomer = uuid.uuid4()
    frozen = [processes.worker(extra_env=SHORT) for _ in range(2)]
    wait_until(lambda: waiting_for_a_message(queue) == 2)
    for worker in frozen:  # a VM or GC pause: each still waits in Redis for its next message
        os.kill(worker.pid, signal.SIGSTOP)

    queue.lpush(
        "account",
        celery_message(wire(registered_event(newcomer))),
        celery_message(wire(command)),
    )
    # Redis handed one message to each frozen worker: with BRPOP both would be gone now.
    wait_until(lambda: queue.llen("account") == 0)
    assert held(queue, "account") == 2
    for worker in frozen:
        processes.kill(worker)
    assert held(queue, "account") == 2  # still there, in a durable place

    processes.worker(extra_env=SHORT)

    wait_until(lambda: Account.objects.filter(customer_id=newcomer).exists(), timeout_s=30)
    wait_until(lambda: LedgerEntry.objects.filter(kind="charge").exists(), timeout_s=30)
    wait_until(lambda: held(queue, "account") == 0)
    time.sleep(1)  # let a late copy be handled too
    assert Account.objects.get(pk=customer_id).balance == 700
    assert LedgerEntry.objects.filter(kind="charge").count() == 1
    assert InboxMessage.objects.filter(message_id__in=[command.id]).count() == 1
    assert OutboxMessage.objects.filter(type="account.debit.reply").count() == 1
    assert queue.llen("account") == 0
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
    # One sweep or two (the two leases run out a moment apart): both messages, given back once.
    given = re.findall(r"gave back (\d+) message\(s\) taken by a consumer that died", logs)
    assert sum(map(int, given)) == 2, given


def test_a_worker_that_stops_cleanly_leaves_no_lease_behind(
    processes: Processes, queue: redis.Redis
) -> None:
    worker = processes.worker(extra_env=SHORT)
    wait_until(lambda: queue.hlen(f"{ACCOUNT['processing_prefix']}processing") == 1)
    worker.send_signal(signal.SIGTERM)  # a warm shutdown
    worker.wait(timeout=30)
    assert queue.hlen(f"{ACCOUNT['processing_prefix']}processing") == 0
    assert not list(queue.scan_iter(f"{ACCOUNT['processing_prefix']}lease.*"))
