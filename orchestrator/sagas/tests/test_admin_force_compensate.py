"""The admin's force-compensate: it asks first, shows what each saga would undo, and is not
offered past a saga's pivot (its order goes through there: only retry and resume)."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from common.outbox.models import OutboxMessage
from common.testing import OPERATOR
from orchestrator.sagas.models import Saga
from orchestrator.sagas.services import checkout_start

pytestmark = pytest.mark.django_db
URL = "/orchestrator/admin/sagas/saga/"


def at_step(current: int, state: str) -> Saga:
    """A checkout whose first steps succeeded and whose step ``current`` is outstanding."""
    started = checkout_start(
        actor=OPERATOR, customer_id=uuid.uuid4(), items=[{"menu_item_id": 1, "quantity": 1}]
    )
    Saga.objects.filter(pk=started.pk).update(
        state=state,
        current_step=current,
        attempt=1,
        data={**started.data, "total": 700},
        steps=[
            {**s, "state": "succeeded" if i < current else "running" if i == current else "pending"}
            for i, s in enumerate(started.steps)
        ],
    )
    return Saga.objects.get(pk=started.pk)


@pytest.fixture
def operator(client: Client) -> Client:
    client.force_login(get_user_model().objects.create_superuser("op", "", "pw"))
    return client


def test_it_asks_first_and_shows_what_will_be_undone(operator: Client) -> None:
    saga = at_step(2, "running")  # the debit (the pivot) is outstanding

    page = operator.post(URL, {"action": "force_compensate", "_selected_action": [saga.pk]})

    assert page.status_code == 200
    assert b"account.refund" in page.content and b"order.reject" in page.content
    saga.refresh_from_db()
    assert saga.state == "running"  # nothing happened yet

    operator.post(
        URL, {"action": "force_compensate", "_selected_action": [saga.pk], "confirmed": "yes"}
    )
    saga.refresh_from_db()
    assert saga.state == "compensating"
    assert OutboxMessage.objects.filter(type="account.refund").count() == 1


def test_it_is_not_offered_past_the_pivot(operator: Client) -> None:
    saga = at_step(3, "failed")  # debited; the approval keeps failing

    page = operator.post(URL, {"action": "force_compensate", "_selected_action": [saga.pk]})
    assert b"not offered" in page.content and b"past its pivot" in page.content
    assert b"Yes, compensate" not in page.content

    operator.post(
        URL, {"action": "force_compensate", "_selected_action": [saga.pk], "confirmed": "yes"}
    )
    saga.refresh_from_db()
    assert (saga.state, saga.current_step) == ("failed", 3)
    assert not OutboxMessage.objects.filter(type="account.refund").exists()
