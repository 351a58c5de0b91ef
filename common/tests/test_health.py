"""/readyz names the dependency that is down, never the error it raised."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client, override_settings

from common.api import health

SECRET_DETAIL = 'password authentication failed for user "cafe_secret" at db.internal'


class _DownDatabase:
    """A connection whose server is gone (what psycopg raises, wrapped by Django)."""

    def cursor(self) -> Any:
        raise OperationalError(SECRET_DETAIL)


@pytest.mark.django_db
def test_ready_names_every_check(client: Client) -> None:
    ready = client.get("/account/readyz")

    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_an_unreachable_redis_is_named_without_its_error(client: Client) -> None:
    with override_settings(REDIS_URL="redis://:hunter2@127.0.0.1:1/0"):
        ready = client.get("/account/readyz")

    assert ready.status_code == 503
    assert ready["content-type"] == "application/problem+json"
    body = ready.json()
    assert (body["code"], body["checks"]) == ("not_ready", {"redis": "unreachable"})
    assert "hunter2" not in ready.content.decode()
    assert "127.0.0.1:1" not in ready.content.decode()


@pytest.mark.django_db
def test_an_unreachable_database_is_named_without_its_error(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(health, "connection", _DownDatabase())

    ready = client.get("/account/readyz")

    assert ready.status_code == 503
    assert json.loads(ready.content)["checks"] == {"database": "unreachable"}
    assert "cafe_secret" not in ready.content.decode()
    # The operator still finds the cause, in the service's log.
    assert SECRET_DETAIL in caplog.text
