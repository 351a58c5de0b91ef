"""Putting envelopes on the service queues as Celery task messages.

Every message is one call of the ``inbox.consume`` task on the destination service's queue,
with the envelope as its single (JSON string) argument. The relay publishes whole batches in
one Redis pipeline: the task message is built by Celery's own protocol code
(``app.amqp.as_task_v2``) and wrapped exactly as kombu's Redis transport stores it.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

CONSUME_TASK: Final = "inbox.consume"


@dataclass(frozen=True)
class Outgoing:
    queue: str
    message_id: str
    type: str
    envelope_json: str


class Publisher:
    def __init__(
        self, app: Celery, *, broker_url: str | None = None, socket_timeout_s: float = 5.0
    ) -> None:
        self.app = app
        self.redis = redis.Redis.from_url(
            broker_url or app.conf.broker_url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            health_check_interval=30,
            # Fail fast: the relay has its own backoff, and waits outside any transaction.
            retry=Retry(NoBackoff(), 0),
        )
        # Celery builds the message shape once; each message only changes its id and argument.
        template = app.amqp.as_task_v2(
            "id",
            CONSUME_TASK,
            args=("",),
            kwargs={},
            argsrepr="",
            kwargsrepr="{}",
            origin=f"relay@{socket.gethostname()}",
            ignore_result=True,
        )
        self._headers: dict[str, Any] = template.headers
        self._properties: dict[str, Any] = template.properties
        self._embed: dict[str, Any] = template.body[2]

    def encode(self, message: Outgoing) -> str:
        headers = {
            **self._headers,
            "id": message.message_id,
            "root_id": message.message_id,
            "argsrepr": f"<{message.type} {message.message_id}>",
        }
        return kombu_redis_payload(
            body=json.dumps([[message.envelope_json], {}, self._embed]),
            headers=headers,
            properties={**self._properties, "correlation_id": message.message_id},
            queue=message.queue,
        )

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Push every message, one LPUSH per queue in one round trip, keeping their order.

        Raises ``redis.RedisError`` if Redis fails; then some may have been pushed and will be
        pushed again (at-least-once).
        """
        by_queue: dict[str, list[str]] = {}
        for message in messages:
            by_queue.setdefault(message.queue, []).append(self.encode(message))
        pipe = self.redis.pipeline(transaction=False)
        for queue, payloads in by_queue.items():
            pipe.lpush(queue, *payloads)  # consumers pop from the other end: first in, first out
        pipe.execute()

    def close(self) -> None:
        self.redis.close()


def kombu_redis_payload(
    *, body: str, headers: dict[str, Any], properties: dict[str, Any], queue: str
) -> str:
    """The JSON document kombu's Redis transport keeps in a queue list for one message."""
    return json.dumps(
        {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                **properties,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )
