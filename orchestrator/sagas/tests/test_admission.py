"""Admission control: while the orchestrator is behind, new sagas get 503 overloaded with
Retry-After and nothing starts; reads go on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from celery import current_app
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from rest_framework.test import APIClient

from common.messaging.transport import Outgoing, Publisher
from common.outbox.models import OutboxMessage
from common.tests.support import broker
from orchestrator.sagas.admission import ADMISSION, Admission, Limits, Load, head_wait_s
from orchestrator.sagas.models import Saga

pytestmark = pytest.mark.django_db

ITEMS = [{"menu_item_id": 1, "quantity": 2}]
LIMITS = Limits(
    max_queue_depth=100,
    max_queue_wait_s=1.0,
    max_outbox_age_s=1.0,
    retry_after_s=2,
    max_late_sagas=25,
)


@pytest.fixture
def orchestrator_queue(settings: SettingsWrapper) -> Iterator[redis.Redis]:
    settings.ADMISSION_CACHE_S = 0.0  # measure on every request
    client = broker()
    client.delete("orchestrator")
    yield client
    client.delete("orchestrator")
    ADMISSION.forget()  # the next test must not see this one's load


def waiting_reply(age_s: float) -> str:
    """A task message as the relays put on the orchestrator's queue, its envelope ``age_s`` old."""
    created = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat()
    envelope = json.dumps({"id": str(uuid.uuid4()), "created_at": created})
    return Publisher(current_app).encode(
        [Outgoing("orchestrator", str(uuid.uuid4()), "r", envelope)]
    )


def checkout(api: APIClient) -> object:
    return api.post(
        "/api/v1/checkouts", {"customer_id": str(uuid.uuid4()), "items": ITEMS}, format="json"
    )


def test_a_queue_whose_next_reply_waited_too_long_sheds_new_checkouts_but_not_reads(
    api: APIClient, orchestrator_queue: redis.Redis
) -> None:
    accepted = checkout(api)
    assert accepted.status_code == 202  # type: ignore[attr-defined]
    orchestrator_queue.lpush("orchestrator", waiting_reply(5.0), waiting_reply(0.1))

    shed = checkout(api)

    assert shed.status_code == 503  # type: ignore[attr-defined]
    assert shed["Retry-After"] == "1"  # type: ignore[index]
    assert shed["Content-Type"] == "application/problem+json"  # type: ignore[index]
    assert shed.json()["code"] == "overloaded"  # type: ignore[attr-defined]
    assert Saga.objects.count() == 1  # nothing started
    checkout_id = accepted.json()["id"]  # type: ignore[attr-defined]
    assert api.get(f"/api/v1/checkouts/{checkout_id}").status_code == 200
    order_id = accepted.json()["order_id"]  # type: ignore[attr-defined]
    refused = api.post("/api/v1/cancellations", {"order_id": order_id}, format="json")
    assert refused.status_code == 503

    orchestrator_queue.delete("orchestrator")  # caught up
    assert checkout(api).status_code == 202  # type: ignore[attr-defined]


def test_an_old_unpublished_command_sheds_new_checkouts(
    api: APIClient, orchestrator_queue: redis.Redis
) -> None:
    checkout(api)
    OutboxMessage.objects.update(created_at=timezone.now() - timedelta(seconds=5))

    assert checkout(api).status_code == 503  # type: ignore[attr-defined]
    assert Saga.objects.count() == 1


def test_limits_name_the_first_signal_past_its_threshold() -> None:
    assert LIMITS.overloaded(Load(queue_depth=5, queue_wait_s=0.01, outbox_age_s=0.0)) is None
    assert LIMITS.overloaded(Load(5, 1.5, 0.0)) == "queue_wait"
    assert LIMITS.overloaded(Load(500, 0.0, 0.0)) == "queue_depth"
    assert LIMITS.overloaded(Load(5, 0.0, 3.0)) == "outbox_age"


def test_a_process_measures_at_most_once_per_cache_period() -> None:
    now = [100.0]
    taken: list[float] = []

    def measure() -> Load:
        taken.append(now[0])
        return Load(0, 0.0, 0.0)

    admission = Admission(measure, cache_s=0.5, clock=lambda: now[0])
    for step in range(10):  # two seconds of requests, every 0.2 s
        now[0] = 100.0 + 0.2 * step
        admission.check(LIMITS)

    assert len(taken) == 4  # at 100.0, 100.6, 101.2, 101.8


def test_the_head_of_a_queue_is_read_as_a_load_signal_only() -> None:
    now = datetime.now(UTC)
    assert 4.9 < head_wait_s(waiting_reply(5.0).encode(), now) < 5.5
    assert head_wait_s(None, now) == 0.0
    assert head_wait_s(b"not kombu at all", now) == 0.0


def late_sagas(count: int, *, waited_s: float) -> None:
    """``count`` checkouts in flight whose outstanding command was sent ``waited_s`` ago."""
    sent = timezone.now() - timedelta(seconds=waited_s)
    Saga.objects.bulk_create(
        Saga(
            type=Saga.Type.PLACE_ORDER,
            version=1,
            state=Saga.State.RUNNING,
            phase="forward",
            order_id=uuid.uuid4(),
            deadline=sent + timedelta(seconds=10.0),  # SAGA_REPLY_TIMEOUT_S
        )
        for _ in range(count)
    )


def test_many_sagas_waiting_on_their_commands_shed_new_checkouts(
    api: APIClient, orchestrator_queue: redis.Redis, settings: SettingsWrapper
) -> None:
    """The orchestrator keeps up, but a participant does not: its commands wait."""
    settings.SAGA_REPLY_TIMEOUT_S = 10.0
    settings.ADMISSION_MAX_LATE_SAGAS = 3
    late_sagas(3, waited_s=4.0)
    late_sagas(20, waited_s=0.2)  # answered in time so far: not late
    assert checkout(api).status_code == 202  # type: ignore[attr-defined]

    late_sagas(1, waited_s=2.0)
    shed = checkout(api)

    assert shed.status_code == 503  # type: ignore[attr-defined]
    assert shed.json()["code"] == "overloaded"  # type: ignore[attr-defined]
    assert Saga.objects.count() == 3 + 20 + 1 + 1
    Saga.objects.filter(deadline__lt=timezone.now() + timedelta(seconds=9)).update(
        state=Saga.State.COMPLETED
    )  # they ended
    assert checkout(api).status_code == 202  # type: ignore[attr-defined]


def test_late_sagas_are_counted_past_their_own_threshold_only() -> None:
    assert LIMITS.overloaded(Load(0, 0.0, 0.0, late_sagas=25)) is None
    assert LIMITS.overloaded(Load(0, 0.0, 0.0, late_sagas=26)) == "late_sagas"
