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
from dataclasses import dataclass
from datetime import datetime

import psycopg
import redis
from django.conf import settings
from django.db import OperationalError, close_old_connections, connection, transaction

from common.messaging.celery import mark_ready
from common.messaging.transport import Outgoing, Publisher
from common.outbox import metrics
from common.outbox.models import OutboxMessage
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
RETURNING id, message_id::text, type, destination, envelope::text, created_at
"""  # noqa: S608 — the table name is ours

# Backoff of a failing row grows 2^attempts from the base, capped; the row is dead at the limit.
MARK_FAILED = f"""
UPDATE {TABLE}
SET attempts = attempts + 1,
    last_error = %s,
    available_at = clock_timestamp() + least(%s * power(2, attempts), %s) * interval '1 second'
                                     * (0.8 + random() * 0.4),
    status = CASE WHEN attempts + 1 >= %s THEN 'dead' ELSE 'pending' END
WHERE id = ANY(%s) AND status = 'pending'
RETURNING status
"""  # noqa: S608


@dataclass(frozen=True)
class Claimed:
    id: int
    outgoing: Outgoing
    created_at: datetime


class PublishFailed(Exception):
    pass


class Relay:
    def __init__(
        self,
        publisher: Publisher,
        *,
        batch_size: int | None = None,
        max_attempts: int | None = None,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 60.0,
    ) -> None:
        self.publisher = publisher
        self.batch_size = batch_size or settings.OUTBOX_BATCH_SIZE
        self.max_attempts = max_attempts or settings.OUTBOX_MAX_ATTEMPTS
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
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
        """Publish one batch; returns how many rows it took. Raises PublishFailed if Redis failed
        (after recording the failed attempt in a transaction of its own)."""
        self._prepare_session()
        claimed: list[Claimed] = []
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(CLAIM, [self.batch_size])
                    claimed = [
                        Claimed(row[0], Outgoing(row[3], row[1], row[2], row[4]), row[5])
                        for row in sorted(cursor.fetchall())  # RETURNING has no order of its own
                    ]
                if claimed:
                    self.publisher.publish([c.outgoing for c in claimed])  # a RedisError rolls back
        except redis.RedisError as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._record_failure([c.id for c in claimed], error)
            raise PublishFailed(error) from exc
        if claimed:
            metrics.published([(c.outgoing, c.created_at) for c in claimed])
        return len(claimed)

    def _record_failure(self, ids: list[int], error: str) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                MARK_FAILED,
                [error[:2000], self.backoff_base_s, self.backoff_cap_s, self.max_attempts, ids],
            )
            dead = sum(1 for (status,) in cursor.fetchall() if status == "dead")
        metrics.publish_failed(len(ids), dead)


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
    linger_s = settings.OUTBOX_LINGER_MS / 1000
    logger.info("relay started: batch %s, poll every %.1fs", relay.batch_size, interval)
    wakeup.wait(0)  # LISTEN before the first batch, so no commit after it goes unnoticed
    mark_ready()
    try:
        while not stop.is_set():
            try:
                taken = relay.relay_batch()
                failures = 0
            except PublishFailed as exc:
                failures += 1
                delay = min(0.1 * 2**failures, 5.0) * random.uniform(0.8, 1.2)
                logger.warning("publish failed (%s); retrying in %.2fs", exc, delay)
                stop.wait(delay)
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
