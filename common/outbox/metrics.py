"""Outbox metrics. Counters and the latency histogram are recorded by the relay process;
backlog gauges are read from the database when ``/metrics`` is scraped (see common.metrics)."""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

from common.messaging.transport import Outgoing

PUBLISHED = Counter("outbox_published", "Outbox messages published to their queue", ["destination"])
FAILURES = Counter("outbox_publish_failures", "Outbox rows whose publish attempt failed")
DEAD = Counter("outbox_dead", "Outbox rows parked as dead after their last attempt")
BROKER_UP = Gauge(
    "outbox_broker_up",
    "1 while the relay reaches Redis, 0 while its publishes fail for the broker as a whole",
    multiprocess_mode="livemin",
)
BROKER_ERRORS = Counter(
    "outbox_broker_errors", "Relay batches held back because Redis was unreachable or refused"
)
REPLAYED = Counter(
    "outbox_replayed", "Sent outbox rows published again because the broker lost its data"
)
LATENCY = Histogram(
    "outbox_commit_to_publish_seconds",
    "From the outbox row's insert (its transaction's commit follows at once) to its publish",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def published(rows: Iterable[tuple[Outgoing, datetime]]) -> None:
    now = datetime.now(UTC)
    per_queue: Counter_[str] = Counter_()
    for outgoing, created_at in rows:
        per_queue[outgoing.queue] += 1
        LATENCY.observe(max((now - created_at).total_seconds(), 0.0))
    for queue, count in per_queue.items():
        PUBLISHED.labels(queue).inc(count)


def publish_failed(rows: int, dead: int) -> None:
    FAILURES.inc(rows)
    if dead:
        DEAD.inc(dead)
