"""Noticing that the broker lost what it held, and publishing it again from the outbox.

Each service's relays keep a marker in the broker, next to the queues: ``outbox:epoch:<service>``
holding the Redis ``run_id`` it was written under. Either sign of loss triggers a replay:

- the marker is gone: the database the queues live in was flushed, or Redis restarted without
  persistence, or a failover promoted a replica that never had it. Only the marker shares the
  queues' fate exactly (same database, same persistence), which ``run_id`` alone cannot tell:
  ``FLUSHDB`` keeps the ``run_id``.
- the marker names another ``run_id``: Redis restarted and kept its data, but an append-only
  file synced every second may still have lost the last writes, which were queue pushes.

The replay re-publishes every row sent within ``OUTBOX_REPLAY_WINDOW_S``: that window must cover
how long a message can wait on a queue before it is consumed (older ones are lost for good; an
operator can replay further back with ``manage.py outbox_replay --since``).
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from datetime import timedelta

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from common.messaging.transport import BrokerUnavailable
from common.outbox import metrics
from common.outbox.services import outbox_replay

logger = logging.getLogger(__name__)


def epoch_key(service: str) -> str:
    return f"outbox:epoch:{service}"


class EpochWatch:
    def __init__(
        self,
        client: redis.Redis,
        *,
        service: str | None = None,
        window_s: float | None = None,
        every_s: float | None = None,
    ) -> None:
        self.client = client
        self.service = service or settings.SERVICE_NAME
        self.key = epoch_key(self.service)
        self.window_s = window_s if window_s is not None else settings.OUTBOX_REPLAY_WINDOW_S
        self.every_s = every_s if every_s is not None else settings.OUTBOX_EPOCH_CHECK_S
        self._next_check = 0.0
        # Replays of all the service's relays are one at a time (one PostgreSQL advisory lock).
        self._lock_id = zlib.crc32(self.key.encode())

    def due(self) -> bool:
        return time.monotonic() >= self._next_check

    def check_soon(self) -> None:
        self._next_check = 0.0

    def check(self) -> int:
        """Replay if the broker lost data since the last look; returns how many rows were.
        Raises ``BrokerUnavailable`` if Redis cannot be asked."""
        self._next_check = time.monotonic() + self.every_s
        try:
            run_id, marker = self._look()
            if self._intact(run_id, marker):
                return 0
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", [self._lock_id])
            try:
                run_id, marker = self._look()  # another relay may have replayed meanwhile
                if self._intact(run_id, marker):
                    return 0
                replayed = self._replay(marker)
                # Only after the replay committed: a crash before this line replays again.
                self.client.set(self.key, f"{run_id}:{uuid.uuid4()}")
                return replayed
            finally:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [self._lock_id])
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _look(self) -> tuple[str, str | None]:
        pipe = self.client.pipeline(transaction=False)
        pipe.info("server")
        pipe.get(self.key)
        info, marker = pipe.execute()
        return str(info["run_id"]), marker.decode() if marker is not None else None

    @staticmethod
    def _intact(run_id: str, marker: str | None) -> bool:
        return marker is not None and marker.split(":", 1)[0] == run_id

    def _replay(self, marker: str | None) -> int:
        since = timezone.now() - timedelta(seconds=self.window_s)
        replayed = outbox_replay(since=since)
        metrics.REPLAYED.inc(replayed)
        cause = "its marker is gone" if marker is None else "it restarted"
        logger.warning(
            "broker lost data (%s): publishing again the %d rows sent since %s",
            cause,
            replayed,
            since.isoformat(),
        )
        return replayed
