"""The relay: publishes committed outbox rows to their queues, at least once.

Each batch is one transaction: claim pending rows with ``FOR UPDATE SKIP LOCKED`` (so several
relays share the work without taking the same row), publish them in one Redis pipeline, mark
them sent, commit. A crash before the commit releases the claim and the rows are published
again later; nothing is ever marked sent before it is on its queue. Rows are chosen by status,
never by an ``id > last_seen`` cursor, so a row whose id was assigned before a slower
transaction committed is not skipped.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

import psycopg
from django.conf import settings
from django.db import OperationalError, close_old_connections, connection, transaction

from common import tracing
from common.messaging.celery import mark_ready
from common.messaging.transport import BrokerUnavailable, Outgoing, Publisher
from common.outbox import metrics
from common.outbox.models import OutboxMessage
from common.outbox.replay import EpochWatch
from common.outbox.services import notify_channel

logger = logging.getLogger(__name__)

TABLE = OutboxMessage._meta.db_table

# Claim and mark in one statement; the mark only counts once the transaction commits, which
# happens after the publish. A crash or a failed publish rolls it back: the rows stay pending.
CLAIM = f"""
UPDATE {TABLE} SET status = 'sent', sent_at = clock_timestamp(), attempts = attempts + 1
WHERE id IN (
    SELECT id FROM {TABLE}
    WHERE status = 'pending' AND available_at <= now()
    ORDER BY id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, message_id::text, type, destination, envelope::text, created_at{{traced}}
"""  # noqa: S608 — the table name is ours
# With tracing on, the claim also reads each row's trace context, for the publish span's links.
CLAIM_TRACED = CLAIM.format(traced=", envelope->'headers'->>'traceparent'")
CLAIM = CLAIM.format(traced="")

# A row whose own publish Redis refused (the broker itself was fine): its claim already counted
# the attempt. It backs off 2^(attempts-1) from the base, capped; it is dead at the limit.
MARK_REFUSED = f"""
UPDATE {TABLE} AS o
SET status = CASE WHEN o.attempts >= %s THEN 'dead' ELSE 'pending' END,
    sent_at = NULL,
    last_error = f.error,
    available_at = clock_timestamp() + least(%s * power(2, o.attempts - 1), %s) * interval '1 second'
                                       * (0.8 + random() * 0.4)
FROM unnest(%s::bigint[], %s::text[]) AS f(id, error)
WHERE o.id = f.id
RETURNING o.status
"""  # noqa: S608


@dataclass(frozen=True)
class Claimed:
    id: int
    outgoing: Outgoing
    created_at: datetime


class Relay:
    def __init__(
        self,
        publisher: Publisher,
        *,
        batch_size: int | None = None,
        max_attempts: int | None = None,
        backoff_base_s: float | None = None,
        backoff_cap_s: float | None = None,
    ) -> None:
        self.publisher = publisher
        self.batch_size = batch_size or settings.OUTBOX_BATCH_SIZE
        self.max_attempts = max_attempts or settings.OUTBOX_MAX_ATTEMPTS
        self.backoff_base_s = backoff_base_s or settings.OUTBOX_BACKOFF_BASE_S
        self.backoff_cap_s = backoff_cap_s or settings.OUTBOX_BACKOFF_CAP_S
        self._prepared: object = None

    def _prepare_session(self) -> None:
        """The relay's commits only record delivery: if PostgreSQL lost the last ones in a crash,
        those rows would just be published again (at-least-once). So they need not wait for
        the WAL flush, which saves an fsync per batch. Domain transactions stay synchronous."""
        connection.ensure_connection()
        if self._prepared is not connection.connection:
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO off")
            self._prepared = connection.connection

    def relay_batch(self) -> int:
        """Publish one batch; returns how many rows it took.

        Raises ``BrokerUnavailable`` if Redis as a whole failed: the claim rolls back, so no
        row counts an attempt, none backs off and the next batch takes them in the same order.
        Only a row that Redis refuses on its own counts an attempt (and is dead at the limit).
        """
        self._prepare_session()
        traced = tracing.ACTIVE
        with transaction.atomic():
            with tracing.untraced(), connection.cursor() as cursor:
                cursor.execute(CLAIM_TRACED if traced else CLAIM, [self.batch_size])
                rows = sorted(cursor.fetchall())  # RETURNING has no order of its own
            if not rows:
                return 0
            claimed = [Claimed(r[0], Outgoing(r[3], r[1], r[2], r[4]), r[5]) for r in rows]
            with tracing.relaying(r[6] for r in rows) if traced else nullcontext():
                refused = self.publisher.publish([c.outgoing for c in claimed])
                failed = self._one_by_one([c for c in claimed if c.outgoing.queue in refused])
                if failed:
                    self._mark_refused(failed)
        metrics.published([(c.outgoing, c.created_at) for c in claimed if c.id not in failed])
        return len(claimed)

    def _one_by_one(self, suspects: list[Claimed]) -> dict[int, str]:
        """Publish the rows of a refused queue singly, so one bad row does not fail the others;
        returns the rows refused again, with the error."""
        failed: dict[int, str] = {}
        for claimed in suspects:
            for error in self.publisher.publish([claimed.outgoing]).values():
                failed[claimed.id] = f"{type(error).__name__}: {error}"[:2000]
        return failed

    def _mark_refused(self, failed: dict[int, str]) -> None:
        ids, errors = list(failed), list(failed.values())
        with connection.cursor() as cursor:
            cursor.execute(
                MARK_REFUSED,
                [self.max_attempts, self.backoff_base_s, self.backoff_cap_s, ids, errors],
            )
            dead = sum(1 for (status,) in cursor.fetchall() if status == "dead")
        metrics.publish_failed(len(ids), dead)
        logger.warning("Redis refused %d outbox rows (%d now dead)", len(ids), dead)


class BrokerWatch:
    """Whether the broker is reachable, as the relay last found it: one log line and a gauge
    when that changes, and the relay's backoff while it is not."""

    def __init__(self, cap_s: float) -> None:
        self.cap_s = cap_s
        self.failures = 0
        self.down_since: float | None = None
        metrics.BROKER_UP.set(1)

    def failed(self, error: BrokerUnavailable) -> float:
        """Record a failed publish; returns how long to wait before the next one."""
        self.failures += 1
        metrics.BROKER_ERRORS.inc()
        if self.down_since is None:
            self.down_since = time.monotonic()
            metrics.BROKER_UP.set(0)
            logger.error(
                "broker unreachable (%s); holding every outbox row until it is back", error
            )
        return min(0.1 * 2**self.failures, self.cap_s) * random.uniform(0.8, 1.2)

    def ok(self) -> bool:
        """Record a working publish; True if the broker has just come back."""
        self.failures = 0
        if self.down_since is None:
            return False
        logger.warning("broker reachable again after %.1fs", time.monotonic() - self.down_since)
        self.down_since = None
        metrics.BROKER_UP.set(1)
        return True


class Wakeup:
    """Blocks until a commit NOTIFYs the outbox channel, or the poll interval passes."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        db = settings.DATABASES["default"]
        conn = psycopg.connect(
            host=db.get("HOST") or "127.0.0.1",
            port=int(db.get("PORT") or 5432),
            user=db.get("USER") or None,
            password=db.get("PASSWORD") or None,
            dbname=db["NAME"],
            autocommit=True,
            connect_timeout=5,
        )
        conn.execute(f'LISTEN "{self.channel}"')
        return conn

    def wait(self, timeout_s: float) -> bool:
        """True if woken by a notification."""
        try:
            if self.conn is None or self.conn.closed:
                self.conn = self._connect()
            woke = any(True for _ in self.conn.notifies(timeout=timeout_s, stop_after=1))
            if woke:
                # Drain the rest: the next batch takes all their rows anyway.
                for _ in self.conn.notifies(timeout=0):
                    pass
            return woke
        except psycopg.Error as exc:
            logger.warning(
                "outbox listener lost its connection (%s); polling until it is back", exc
            )
            self.close()
            time.sleep(min(timeout_s, 1.0))
            return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_relay(relay: Relay, *, stop: threading.Event, poll_interval_s: float | None = None) -> None:
    """Relay until ``stop`` is set: drain, then sleep until a commit wakes us or the poll interval."""
    interval = poll_interval_s if poll_interval_s is not None else settings.OUTBOX_POLL_INTERVAL
    wakeup = Wakeup(notify_channel(settings.SERVICE_NAME))
    failures = 0
    broker = BrokerWatch(settings.OUTBOX_BROKER_RETRY_CAP_S)
    epoch = EpochWatch(relay.publisher.redis)
    linger_s = settings.OUTBOX_LINGER_MS / 1000
    logger.info("relay started: batch %s, poll every %.1fs", relay.batch_size, interval)
    wakeup.wait(0)  # LISTEN before the first batch, so no commit after it goes unnoticed
    mark_ready()
    try:
        while not stop.is_set():
            try:
                if epoch.due():
                    epoch.check()
                taken = relay.relay_batch()
                failures = 0
                broker.ok()
            except BrokerUnavailable as exc:
                # When it is back, look for lost data before publishing anything: a replay then
                # goes out ahead of the rows written during the outage, in the original order.
                epoch.check_soon()
                stop.wait(broker.failed(exc))
                continue
            except OperationalError as exc:
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                logger.warning("database unavailable (%s); retrying in %.2fs", exc, delay)
                close_old_connections()
                connection.close()
                stop.wait(delay)
                continue
            if taken >= relay.batch_size:
                continue  # a full batch: more are likely waiting
            # Every commit that wrote rows has notified us (notifications queue up while we
            # publish), so a short batch means we can wait instead of claiming an empty one.
            if wakeup.wait(interval) and linger_s and relay.publisher.backlogged:
                # The workers are behind: what we publish now would wait behind their backlog
                # anyway. Let more commits land first, so that each queue's envelopes travel
                # together in one task message and cost its worker one task, not several.
                stop.wait(linger_s)
    finally:
        wakeup.close()
        relay.publisher.close()
        logger.info("relay stopped")
