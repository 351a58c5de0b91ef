"""Admission control: refuse new sagas while the orchestrator is behind, instead of queueing
them without bound.

The system is behind when the reply the orchestrator will handle next has waited on its queue
too long (or the queue is very long), when its own outbox holds a row unpublished too long (its
relay or the broker cannot keep up), or when many sagas have waited too long for the answer to a
command (a participant, its queue or its relay cannot keep up: once KEDA runs more than one
orchestrator worker, that is where a backlog forms first). Past any threshold, starting a
checkout or a cancellation answers 503 ``overloaded`` with ``Retry-After``; reads and sagas
already running go on. The measurement costs one Redis round trip and one query on two partial
indexes, taken at most every ``ADMISSION_CACHE_S`` per process.

Thresholds (settings, from the measured capacity: the system completes about 55 checkouts/s,
each of which is four replies to the orchestrator, so ~220 replies/s at saturation; below it a
reply waits milliseconds):

- ``ADMISSION_MAX_QUEUE_WAIT_S`` (1.0): a reply a second old at the head of the queue means
  ~220 replies wait before it, and a new checkout's four turns would each wait as long.
- ``ADMISSION_MAX_QUEUE_DEPTH`` (2000 task messages): a backstop if the head cannot be read.
- ``ADMISSION_MAX_OUTBOX_AGE_S`` (1.0): commands the orchestrator decided but has not sent.
- ``ADMISSION_MAX_LATE_SAGAS`` (25): sagas whose outstanding command was sent more than
  ``ADMISSION_MAX_QUEUE_WAIT_S`` ago (read from the deadline the sweep uses: the send time plus
  ``SAGA_REPLY_TIMEOUT_S``; a saga waiting to retry counts too). Below saturation a command is
  answered in milliseconds, so this stays near 0; 25 is under a second of checkouts at capacity.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import connection
from prometheus_client import Counter

from common.api.errors import BusinessError
from common.outbox.models import OutboxMessage
from orchestrator.sagas.models import Saga

logger = logging.getLogger(__name__)

SHED = Counter(
    "admission_shed", "Saga starts refused because the orchestrator is behind", ["reason"]
)

# The oldest unpublished row's age (the partial pending index), and how many in-flight sagas have
# waited longer than a limit for their command's answer, counting up to a cap (saga_due_idx).
BACKLOG = f"""
SELECT
    (SELECT extract(epoch FROM now() - created_at) FROM {OutboxMessage._meta.db_table}
     WHERE status = 'pending' ORDER BY id LIMIT 1),
    (SELECT count(*) FROM (
        SELECT 1 FROM {Saga._meta.db_table}
        WHERE state IN ('{Saga.State.RUNNING}', '{Saga.State.COMPENSATING}')
          AND deadline < now() + make_interval(secs => %s)
        LIMIT %s) AS late)
"""  # noqa: S608 — the table names and states are ours


@dataclass(frozen=True)
class Load:
    queue_depth: int
    queue_wait_s: float
    outbox_age_s: float
    late_sagas: int = 0


@dataclass(frozen=True)
class Limits:
    max_queue_depth: int
    max_queue_wait_s: float
    max_outbox_age_s: float
    retry_after_s: int
    max_late_sagas: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_queue_depth=settings.ADMISSION_MAX_QUEUE_DEPTH,
            max_queue_wait_s=settings.ADMISSION_MAX_QUEUE_WAIT_S,
            max_outbox_age_s=settings.ADMISSION_MAX_OUTBOX_AGE_S,
            retry_after_s=settings.ADMISSION_RETRY_AFTER_S,
            max_late_sagas=settings.ADMISSION_MAX_LATE_SAGAS,
        )

    def overloaded(self, load: Load) -> str | None:
        """Why this load is too much, or None."""
        if load.queue_wait_s > self.max_queue_wait_s:
            return "queue_wait"
        if load.queue_depth > self.max_queue_depth:
            return "queue_depth"
        if load.outbox_age_s > self.max_outbox_age_s:
            return "outbox_age"
        if load.late_sagas > self.max_late_sagas:
            return "late_sagas"
        return None


def head_wait_s(raw: bytes | None, now: datetime) -> float:
    """How long the envelope at the head of a queue (kombu's stored message) has existed; 0 for
    anything unreadable: this is a load signal, not a message anyone acts on."""
    if raw is None:
        return 0.0
    try:
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        created = datetime.fromisoformat(json.loads(body[0][0])["created_at"])
        return max((now - created).total_seconds(), 0.0)
    except (ValueError, KeyError, IndexError, TypeError):
        return 0.0


def measure(client: redis.Redis, queue: str, limits: Limits, reply_timeout_s: float) -> Load:
    """The load now: the queue's length and head from Redis, the backlog from the database
    (late sagas counted only up to one more than the limit: enough to decide)."""
    depth, wait = 0, 0.0
    try:
        pipe = client.pipeline(transaction=False)
        pipe.llen(queue)
        pipe.lindex(queue, -1)  # consumers pop from the right: the next one handled
        depth, head = pipe.execute()
        wait = head_wait_s(head, datetime.now(UTC))
    except redis.RedisError as exc:
        # The broker itself is down: the relay holds the commands, and the outbox age shows it.
        logger.warning("admission: cannot read the %s queue (%s)", queue, exc)
    with connection.cursor() as cursor:
        # Sent more than max_queue_wait_s ago: its deadline is less than the rest of the timeout away.
        cursor.execute(
            BACKLOG, [reply_timeout_s - limits.max_queue_wait_s, limits.max_late_sagas + 1]
        )
        oldest, late = cursor.fetchone()
    return Load(int(depth), wait, float(oldest or 0.0), int(late))


class Admission:
    """The last measurement of this process, at most ``cache_s`` old."""

    def __init__(
        self,
        measure_load: Callable[[], Load],
        *,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.measure_load = measure_load
        self.cache_s = cache_s
        self.clock = clock
        self._lock = threading.Lock()
        self._load: Load | None = None
        self._taken_at = 0.0

    def load(self) -> Load:
        with self._lock:
            now = self.clock()
            if self._load is None or now - self._taken_at >= self.cache_s:
                self._load, self._taken_at = self.measure_load(), now
            return self._load

    def forget(self) -> None:
        """Measure afresh at the next request."""
        with self._lock:
            self._load = None

    def check(self, limits: Limits) -> None:
        """Raise 503 ``overloaded`` if the orchestrator is behind."""
        load = self.load()
        reason = limits.overloaded(load)
        if reason is None:
            return
        SHED.labels(reason).inc()
        raise BusinessError(
            "overloaded",
            "The system is behind; nothing was started. Try again shortly.",
            status=503,
            retry_after_s=limits.retry_after_s,
        )


@functools.cache
def _broker() -> redis.Redis:
    # Short timeouts: a hung broker must not hold up the request it is asked about.
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=0.25, socket_connect_timeout=0.25
    )


def _measure_orchestrator() -> Load:
    return measure(
        _broker(), settings.SERVICE_NAME, Limits.from_settings(), settings.SAGA_REPLY_TIMEOUT_S
    )


ADMISSION = Admission(_measure_orchestrator, cache_s=0.5)


def admission_check() -> None:
    """Called by every use-case that starts a saga, before it writes anything."""
    if settings.ADMISSION_ENABLED:
        ADMISSION.cache_s = settings.ADMISSION_CACHE_S
        ADMISSION.check(Limits.from_settings())
