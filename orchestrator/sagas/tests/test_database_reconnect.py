"""A worker whose PostgreSQL connection was cut (a server restart, a failover) connects again by
itself. Found by ``make chaos``: after a PostgreSQL restart the saga sweep (a query outside any
transaction) failed on the dead connection, and from then on every message failed on it too
("the connection is lost") — the orchestrator's worker stopped moving sagas until restarted."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from celery import current_app
from django.db import connection
from django.utils import timezone

from common.messaging.contract import Reply
from common.messaging.envelope import new_reply
from common.testing import OPERATOR
from common.tests.integration.conftest import Processes
from common.tests.support import push, wait_until, wire
from orchestrator.sagas.models import Saga
from orchestrator.sagas.services import checkout_start
from orchestrator.sagas.tests.test_forged_replies import at_step, outstanding

pytestmark = pytest.mark.django_db(transaction=True)


def sweep() -> None:
    """What the beat sends every second: ``sagas.sweep`` on the orchestrator's queue."""
    current_app.send_task("sagas.sweep", queue="orchestrator")


def other_connections(*, cut: bool = False) -> int:
    """Every other backend of this test database (the worker's); ``cut`` terminates them, as a
    PostgreSQL restart would."""
    what = "count(pg_terminate_backend(pid))" if cut else "count(*)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {what} FROM pg_stat_activity "  # noqa: S608 — one of two fixed strings
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def test_the_worker_reconnects_after_its_database_connection_is_cut(
    processes: Processes, queue: redis.Redis
) -> None:
    # Given a worker that has used its connection, and a checkout waiting for create_pending
    saga = checkout_start(
        actor=OPERATOR, customer_id=uuid.uuid4(), items=[{"menu_item_id": 1, "quantity": 2}]
    )
    # (its reply deadline far off, so no sweep re-sends the command meanwhile)
    Saga.objects.filter(pk=saga.pk).update(deadline=timezone.now() + timedelta(hours=1))
    processes.worker()
    sweep()
    wait_until(lambda: other_connections() >= 1, timeout_s=30)

    # When PostgreSQL drops the connection, and the next task (a sweep) fails on it
    assert other_connections(cut=True) >= 1
    sweep()
    create = outstanding(saga)
    push(
        queue,
        "orchestrator",
        wire(new_reply(create, Reply(ok=True, result={"total": 700}), source="order")),
    )

    # Then the reply after it is handled: the saga moves on
    wait_until(lambda: at_step(saga, 1), timeout_s=30)
