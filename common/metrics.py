"""``/<service>/metrics``: every process's metrics of this service, plus backlog read from the DB.

With ``PROMETHEUS_MULTIPROC_DIR`` set (as ``make up`` does, one directory per service), web
workers, Celery workers and relays all write their counters there and any web worker reports
the sum. The outbox/inbox backlog is a database fact, so it is queried at scrape time, and so
is the length of the service's own queue (one LLEN; absent while Redis cannot be reached).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from common.inbox.models import DeadLetter
from common.outbox.models import OutboxMessage

logger = logging.getLogger(__name__)

BACKLOG = f"""
SELECT
    count(*) FILTER (WHERE status = 'pending'),
    coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')), 0),
    count(*) FILTER (WHERE status = 'dead')
FROM {OutboxMessage._meta.db_table}
WHERE status IN ('pending', 'dead')
"""  # noqa: S608 — the table name is ours


@functools.cache
def _broker() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def queue_depth() -> int | None:
    """Task messages waiting on this service's queue (each service's queue has its name)."""
    try:
        return int(_broker().llen(settings.SERVICE_NAME))
    except redis.RedisError as exc:
        logger.warning("metrics: cannot read the %s queue (%s)", settings.SERVICE_NAME, exc)
        return None


class BacklogCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        with connection.cursor() as cursor:
            cursor.execute(BACKLOG)
            pending, oldest_age, dead = cursor.fetchone()
        dead_letters = DeadLetter.objects.filter(retried_at__isnull=True).count()
        yield GaugeMetricFamily(
            "outbox_pending", "Outbox rows waiting to be published", value=pending
        )
        yield GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox row",
            value=float(oldest_age),
        )
        yield GaugeMetricFamily("outbox_dead_rows", "Outbox rows parked as dead", value=dead)
        yield GaugeMetricFamily(
            "inbox_dead_letters_open", "Dead letters not yet retried", value=dead_letters
        )
        depth = queue_depth()
        if depth is not None:
            yield GaugeMetricFamily(
                "inbox_queue_depth",
                "Task messages waiting on this service's queue, not yet taken by a worker",
                value=depth,
            )


_backlog_registry = CollectorRegistry()
_backlog_registry.register(BacklogCollector())
_extra_registries: list[CollectorRegistry] = [_backlog_registry]


def register_collector(collector: Collector) -> None:
    """Add a service's own scrape-time collector (e.g. sagas running) to its /metrics."""
    registry = CollectorRegistry()
    registry.register(collector)
    _extra_registries.append(registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry) + b"".join(generate_latest(r) for r in _extra_registries)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
