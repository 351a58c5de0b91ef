"""The row lock use-cases start with: the same row as the ORM's, and really a lock."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from common.messaging.contract import CustomerRegistered
from common.messaging.envelope import new_event
from common.outbox.models import OutboxMessage
from common.tests.support import put
from common.transactions import locked

pytestmark = pytest.mark.django_db(transaction=True)


def a_row() -> OutboxMessage:
    event = new_event(
        "customer.registered",
        CustomerRegistered(customer_id=uuid.uuid4(), name="Ann", email="a@example.com"),
        source="customer",
    )
    put(event)
    return OutboxMessage.objects.get(message_id=event.id)


def test_locked_loads_the_same_instance_as_the_orm_json_and_times_included() -> None:
    row = a_row()
    with transaction.atomic():
        mine = locked(OutboxMessage, row.pk)
    assert mine is not None and not mine._state.adding and mine._state.db == "default"
    for field in OutboxMessage._meta.concrete_fields:
        assert getattr(mine, field.attname) == getattr(row, field.attname), field.name
    assert isinstance(mine.envelope, dict)


def test_locked_answers_none_for_a_missing_row_and_refuses_to_run_outside_a_transaction() -> None:
    row = a_row()
    with transaction.atomic():
        assert locked(OutboxMessage, row.pk + 1000) is None
    with pytest.raises(TransactionManagementError):
        locked(OutboxMessage, row.pk)


def test_locked_holds_the_row_until_the_transaction_ends() -> None:
    row = a_row()
    waited: list[bool] = []

    def other() -> None:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '200ms'")
            try:
                locked(OutboxMessage, row.pk)
                waited.append(False)
            except Exception:
                waited.append(True)
        connection.close()

    with transaction.atomic():
        locked(OutboxMessage, row.pk)
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=10)
    assert waited == [True]
