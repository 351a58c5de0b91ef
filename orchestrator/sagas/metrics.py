"""Saga metrics: counters and durations from the processes that move sagas; running, overdue and
failed counts and the age of the oldest saga in flight read from the database at scrape time,
with the reply timeout they are judged by (the alert rules of deploy/monitoring compare the two)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.sagas.models import Saga

STARTED = Counter("sagas_started", "Sagas started", ["type"])
FINISHED = Counter(
    "sagas_finished", "Sagas that reached completed, rejected or failed", ["type", "state"]
)
DURATION = Histogram(
    "saga_duration_seconds",
    "From start to completed or rejected",
    ["type", "state"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
)
OVERDUE_GRACE = timedelta(seconds=1)


def transition(saga: Saga, was: str | None) -> None:
    if saga.state in {Saga.State.COMPLETED, Saga.State.REJECTED, Saga.State.FAILED}:
        FINISHED.labels(saga.type, saga.state).inc()
    if saga.state in {Saga.State.COMPLETED, Saga.State.REJECTED}:
        DURATION.labels(saga.type, saga.state).observe(
            (timezone.now() - saga.created_at).total_seconds()
        )


class SagaCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        running = GaugeMetricFamily(
            "sagas_in_flight", "Sagas running or compensating", labels=["type"]
        )
        overdue = GaugeMetricFamily(
            "sagas_overdue", "Sagas whose reply is overdue", labels=["type"]
        )
        failed = GaugeMetricFamily("sagas_failed", "Sagas waiting for an operator", labels=["type"])
        oldest = GaugeMetricFamily(
            "sagas_in_flight_oldest_age_seconds",
            "Age of the oldest saga running or compensating (0 when none is)",
            labels=["type"],
        )
        # Only the sagas in flight (the partial index's rows) and the failed ones (the type and
        # state index) are read: a scrape costs the same whatever the history holds.
        in_flight = (
            Saga.objects.filter(state__in=["running", "compensating"])
            .values("type")
            .annotate(
                in_flight=Count("pk"),
                late=Count("pk", filter=Q(deadline__lt=now - OVERDUE_GRACE)),
                started=Min("created_at"),
            )
        )
        counts: dict[str, dict[str, Any]] = {row["type"]: row for row in in_flight}
        for saga_type in Saga.Type.values:
            stuck = Saga.objects.filter(type=saga_type, state="failed").count()
            counts.setdefault(saga_type, {})["stuck"] = stuck
        for saga_type in Saga.Type.values:
            row = counts.get(saga_type, {})
            running.add_metric([saga_type], row.get("in_flight", 0))
            overdue.add_metric([saga_type], row.get("late", 0))
            failed.add_metric([saga_type], row.get("stuck", 0))
            started = row.get("started")
            oldest.add_metric([saga_type], (now - started).total_seconds() if started else 0.0)
        yield from (running, overdue, failed, oldest)
        yield GaugeMetricFamily(
            "saga_reply_timeout_seconds",
            "How long a saga waits for a reply before its first retry (SAGA_REPLY_TIMEOUT_S)",
            value=settings.SAGA_REPLY_TIMEOUT_S,
        )
