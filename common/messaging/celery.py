"""The Celery application of a service: Redis broker, JSON only, at-least-once delivery."""

from __future__ import annotations

import os

from celery import Celery

from common.messaging.routing import SERVICES

# Longer than any task may run or wait (retry countdowns stay well below it), so Redis never
# hands an unacknowledged message to a second worker while the first still holds it.
VISIBILITY_TIMEOUT_S = 3600


def make_celery_app(service: str) -> Celery:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{service}.settings")
    app = Celery(service)
    broker_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    app.conf.update(
        broker_url=broker_url,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_default_queue=service,
        task_create_missing_queues=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        timezone="UTC",
        enable_utc=True,
    )
    return app
