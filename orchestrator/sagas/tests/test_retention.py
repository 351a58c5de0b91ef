"""Retention: finished sagas and their history are pruned in batches after their period; the
saga gauges read only what is in flight or failed."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from common.inbox.tasks import prune
from orchestrator.sagas.models import Saga, SagaEvent
from orchestrator.sagas.services import saga_prune

pytestmark = pytest.mark.django_db


def saga(state: str, *, finished_hours_ago: float | None = None, deadline_s: float = 60) -> Saga:
    now = timezone.now()
    finished = now - timedelta(hours=finished_hours_ago) if finished_hours_ago is not None else None
    made = Saga.objects.create(
        type="place_order",
        version=1,
        state=state,
        phase="forward",
        order_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        finished_at=finished,
        deadline=now + timedelta(seconds=deadline_s)
        if state in {"running", "compensating"}
        else None,
    )
    SagaEvent.objects.create(saga=made, kind="started")
    SagaEvent.objects.create(saga=made, kind="command_sent", step="create_order")
    return made


def test_finished_sagas_past_retention_go_with_their_history_and_nothing_else(
    settings: SettingsWrapper,
) -> None:
    settings.SAGA_RETENTION_HOURS = 24
    old = [saga("completed", finished_hours_ago=30) for _ in range(4)]
    old.append(saga("rejected", finished_hours_ago=25))
    kept = [
        saga("completed", finished_hours_ago=2),  # within retention: still found by order id
        saga("running"),
        saga("failed", finished_hours_ago=None),  # waits for an operator
    ]
    Saga.objects.filter(pk=kept[2].pk).update(updated_at=timezone.now() - timedelta(days=9))

    assert saga_prune(batch_size=2) == 5  # three batches

    assert set(Saga.objects.values_list("pk", flat=True)) == {s.pk for s in kept}
    assert not SagaEvent.objects.filter(saga_id__in=[s.pk for s in old]).exists()
    assert SagaEvent.objects.count() == 2 * len(kept)
    assert Saga.objects.filter(order_id=kept[0].order_id).exists()


def test_housekeeping_prunes_sagas_and_dead_letters_on_the_orchestrator(
    settings: SettingsWrapper,
) -> None:
    settings.SAGA_RETENTION_HOURS = 1
    saga("completed", finished_hours_ago=2)

    counts = prune()

    assert counts["sagas"] == 1
    assert set(counts) == {"outbox", "inbox", "dead_letters", "idempotency", "sagas"}


def test_saga_gauges_count_in_flight_overdue_and_failed(
    client: Client, settings: SettingsWrapper
) -> None:
    settings.SAGA_REPLY_TIMEOUT_S = 2.5
    saga("running")
    late = saga("running", deadline_s=-60)  # overdue
    Saga.objects.filter(pk=late.pk).update(created_at=timezone.now() - timedelta(seconds=600))
    saga("failed")
    for _ in range(3):
        saga("completed", finished_hours_ago=1)

    with CaptureQueriesContext(connection) as queries:
        text = client.get("/orchestrator/metrics").content.decode()

    assert 'sagas_in_flight{type="place_order"} 2.0' in text
    assert 'sagas_overdue{type="place_order"} 1.0' in text
    assert 'sagas_failed{type="place_order"} 1.0' in text
    assert 'sagas_in_flight{type="cancel_order"} 0.0' in text
    oldest = next(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('sagas_in_flight_oldest_age_seconds{type="place_order"}')
    )
    assert 600 <= oldest < 660  # the older of the two running, not the failed one
    assert 'sagas_in_flight_oldest_age_seconds{type="cancel_order"} 0.0' in text
    assert "saga_reply_timeout_seconds 2.5" in text
    saga_queries = [q["sql"] for q in queries.captured_queries if '"sagas_saga"' in q["sql"]]
    assert saga_queries and all(
        "IN ('running', 'compensating')" in sql or "'failed'" in sql for sql in saga_queries
    )  # never the whole table
