"""/<service>/metrics: the scrape-time gauges besides the outbox backlog (test_outbox)."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from common.metrics import _broker

pytestmark = pytest.mark.django_db


def test_metrics_report_the_length_of_the_services_own_queue(client: Client) -> None:
    queue = settings.SERVICE_NAME
    broker = _broker()
    broker.delete(queue, "order")
    broker.lpush(queue, *(json.dumps({"n": n}) for n in range(3)))
    broker.lpush("order", "{}")  # another service's queue is not this one's depth
    try:
        body = client.get(f"/{queue}/metrics").content.decode()
    finally:
        broker.delete(queue, "order")

    assert "inbox_queue_depth 3.0" in body


def test_metrics_still_answer_without_redis(client: Client, settings: SettingsWrapper) -> None:
    _broker.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        response = client.get(f"/{settings.SERVICE_NAME}/metrics")
    finally:
        _broker.cache_clear()

    assert response.status_code == 200
    body = response.content.decode()
    assert "outbox_pending" in body
    assert "inbox_queue_depth" not in body
