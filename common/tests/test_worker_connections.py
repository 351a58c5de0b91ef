"""The workers' check of their database connections before each task (common.messaging.celery)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common.messaging.celery import _drop_broken_database_connections

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_healthy_connection_is_left_alone_and_costs_no_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection.ensure_connection()
    connection.health_check_done = True  # type: ignore[attr-defined]  # missing from the stubs
    raw = connection.connection
    checks: list[bool] = []
    is_usable = connection.is_usable

    def counted() -> bool:
        checks.append(True)
        return is_usable()

    monkeypatch.setattr(connection, "is_usable", counted)

    with CaptureQueriesContext(connection) as queries:
        _drop_broken_database_connections()
        connection.cursor().execute("SELECT 2")

    # Only the task's own query: no health check (a SELECT 1 round trip) before it.
    assert checks == []
    assert [q["sql"] for q in queries.captured_queries] == ["SELECT 2"]
    assert connection.connection is raw


def test_a_connection_that_failed_and_no_longer_answers_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection.ensure_connection()
    connection.errors_occurred = True
    monkeypatch.setattr(connection, "is_usable", lambda: False)

    _drop_broken_database_connections()

    assert connection.connection is None


def test_a_connection_that_failed_but_answers_is_kept() -> None:
    connection.ensure_connection()
    connection.errors_occurred = True
    raw = connection.connection

    _drop_broken_database_connections()

    assert connection.connection is raw and not connection.errors_occurred
