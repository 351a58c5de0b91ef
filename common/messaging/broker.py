"""kombu's Redis transport, with one fix for what every message costs a worker, and one for
a broker that refuses writes.

While a worker waits in BRPOP, kombu answers every other command of the channel (recording a
message as unacknowledged when it arrives, acknowledging it when the task is done) from a new
``redis.Redis`` client object, built from scratch each time. Building it cost about a tenth of
a worker's CPU per message in the saga benchmark. Here the channel builds that client once and
reuses it (a new one if kombu has replaced the channel's connection pool): it draws a socket
from that pool for each command, as the throw-away clients did, so nothing else changes.

When Redis refuses writes (full under ``noeviction``, a read-only replica), kombu's requeue of a
message (``reject(requeue=True)``) fails inside its transaction and the exception kills the
worker. Here the message then stays where it is, in the broker's unacknowledged set (the
transaction changed nothing), the worker only lets go of it locally and goes on, and the
visibility-timeout sweep hands it out again once Redis takes writes. That sweep tolerates the
same refusal.

Selected with ``broker_transport`` in ``common.messaging.celery``; the broker URL stays
``redis://``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import redis as redis_py
from kombu.transport import redis, virtual

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except redis_py.ResponseError as refused:
            logger.warning(
                "Redis refused to requeue message %s (%s): it stays unacknowledged on the broker "
                "and is handed out again after the visibility timeout",
                delivery_tag,
                refused,
            )
            virtual.QoS.ack(self, delivery_tag)  # let go locally only: take the next message

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        try:
            super().restore_visible(start=start, num=num, interval=interval)
        except redis_py.ResponseError as refused:
            logger.warning("could not restore unacknowledged messages yet (%s)", refused)


class Channel(redis.Channel):
    QoS = QoS
    _side_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._side_client is None or self._side_client.connection_pool is not self.pool:
            self._side_client = cast(Any, self)._create_client()  # (not in the type stubs)
        yield self._side_client

    def close(self) -> None:
        self._side_client = None
        super().close()


class Transport(redis.Transport):
    Channel = Channel
