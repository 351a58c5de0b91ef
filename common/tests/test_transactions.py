"""The row lock use-cases start with: the same row as the ORM's, and really a lock."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from common.outbox.models import OutboxMessage
from common.tests.support import put, registered_event
from common.transactions import locked

pytestmark = pytest.mark.django_db(transaction=True)


def a_row() -> OutboxMessage:
    event = registered_event()
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


def _seq_scans_of(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = %s", [table])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def test_a_statement_prepared_while_its_table_was_small_is_planned_again_when_it_has_grown() -> (
    None
):
    """With PostgreSQL's default plan cache mode a prepared statement soon runs a generic plan,
    kept for the connection's life: for a table of a few rows, a sequential scan — then still
    used on a table of thousands (no ANALYZE when autovacuum is off, as on this machine)."""
    table = OutboxMessage._meta.db_table

    def add(rows: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} (message_id, type, destination, envelope, status, attempts,
                                     available_at, created_at, last_error)
                SELECT gen_random_uuid(), 't', 'q', '{{}}'::jsonb, 'sent', 1, now(), now(), ''
                FROM generate_series(1, %s)
                """,  # noqa: S608 — our table
                [rows],
            )

    add(5)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    with transaction.atomic():
        for pk in range(1, 21):  # prepared after two runs, a generic plan offered after five
            locked(OutboxMessage, pk)
    add(20_000)
    with transaction.atomic():
        before = _seq_scans_of(table)
        for pk in range(1, 21):
            locked(OutboxMessage, pk)
        assert _seq_scans_of(table) == before
