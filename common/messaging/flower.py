"""The Celery application Flower runs with: ``celery -A common.messaging.flower flower``.

Flower only watches. It reads the event stream the services' processes publish and the length
of each service's queue, and that is all its Redis user (``flower`` in
common.messaging.redis_acl) allows: no push, no delete, no write at all. So this app has no
Django (Flower needs none of a service's settings or secrets), its event receiver keeps its
binding to the event exchange in memory rather than in Redis (fanout delivery is Redis pub/sub,
which never reads that table), its transport never sweeps unacknowledged messages (events are
taken without acknowledgement: there are none), and its remote control sends nothing: the
workers obey none anyway (``worker_enable_remote_control`` is off), and Flower's pages that ask
them (a worker's pool, its registered tasks) stay empty instead of failing. Its broker URL
shows as ``redis://`` (not this transport's module path), so that Flower's Broker page finds
its Redis client.

Its URL: ``FLOWER_REDIS_URL``, else ``REDIS_URL``.
"""

from __future__ import annotations

import os
from typing import Any

import celery.app.amqp
import kombu
from celery import Celery
from celery.app.control import Control
from kombu import Queue
from kombu.transport import redis

from common.messaging.routing import SERVICES


class QoS(redis.QoS):
    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to restore: events are taken without acknowledgement."""


class Channel(redis.Channel):
    QoS = QoS
    priority_steps = [0]
    _fanout_queues: dict[str, tuple[str, str]]

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        if self.typeof(exchange).type != "fanout":
            raise ValueError(f"Flower's app only binds to fanout exchanges, not {exchange!r}")
        self._fanout_queues[queue] = (exchange, routing_key.replace("#", "*"))

    def _size(self, queue: str) -> int:
        """Its event queue is a pub/sub subscription, not a list: always empty."""
        return 0

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        """A fanout queue has no list and (here) no binding in Redis: nothing to delete."""
        self.auto_delete_queues.discard(queue)


class Transport(redis.Transport):
    Channel = Channel


class Connection(kombu.Connection):
    def as_uri(self, *args: Any, **kwargs: Any) -> str:
        """``redis://…``, not the transport's module path: Flower picks the client of its
        Broker page (queue lengths) by this URL's scheme."""
        uri = str(super().as_uri(*args, **kwargs))
        return "redis" + uri[uri.index("://") :]


class AMQP(celery.app.amqp.AMQP):
    Connection = Connection


class SilentControl(Control):
    """Remote control that broadcasts nothing: every command finds no worker."""

    def broadcast(self, command: str, *args: Any, reply: bool = False, **kwargs: Any) -> Any:
        return [] if reply else None


def make_flower_app() -> Celery:
    app = Celery("flower", amqp=AMQP, control=SilentControl, fixups=[], set_as_current=True)
    app.conf.update(
        broker_url=os.environ.get("FLOWER_REDIS_URL")
        or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        broker_transport="common.messaging.flower:Transport",
        broker_transport_options={"priority_steps": [0]},
        broker_connection_retry_on_startup=True,
        accept_content=["json"],
        event_serializer="json",
        # Bound in memory only (see above), so no deadline to keep in Redis either.
        event_queue_expires=None,
        # The queues Flower's Broker page shows (their lengths: one LLEN each).
        task_default_queue=SERVICES[0],
        task_queues=[Queue(service) for service in SERVICES],
        worker_enable_remote_control=False,
        timezone="UTC",
        enable_utc=True,
    )
    return app


app = make_flower_app()
