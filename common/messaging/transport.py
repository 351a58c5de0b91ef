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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

CONSUME_TASK: Final = "inbox.consume"
# At most this many envelopes in one task message: a worker handles them one after another.
ENVELOPES_PER_TASK: Final = 20


# Replies of Redis that say the broker as a whole cannot take writes now, whatever is sent:
# out of memory under ``noeviction``, a read-only replica, a failed disk, still loading.
BROKER_WIDE_REFUSALS: Final = ("OOM", "READONLY", "MISCONF", "LOADING", "MASTERDOWN", "BUSY")


def names_of(envelopes: Iterable[tuple[str, object]]) -> str:
    """A task message's argsrepr: every envelope's type and id, which is what Flower shows and
    searches (Celery's own repr of the arguments is cut at 1 KiB, inside the first envelope)."""
    return " ".join(f"<{type_name} {message_id}>" for type_name, message_id in envelopes)


class BrokerUnavailable(Exception):
    """Redis could not be reached, timed out, or refuses every write: nothing about the
    messages themselves is wrong, so none of them should count it as a failed attempt."""


def broker_wide(error: redis.RedisError) -> bool:
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return True
    return isinstance(error, redis.ResponseError) and str(error).startswith(BROKER_WIDE_REFUSALS)


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
        # Whether the last publish found messages already waiting on one of its queues.
        self.backlogged = False

    def encode(self, messages: Sequence[Outgoing]) -> str:
        """One task message carrying these envelopes (all for one queue), in order. Its id is
        the first envelope's; its argsrepr names every envelope, so Flower finds each one."""
        first = messages[0]
        headers = {
            **self._headers,
            "id": first.message_id,
            "root_id": first.message_id,
            "argsrepr": names_of((m.type, m.message_id) for m in messages),
        }
        return kombu_redis_payload(
            body=json.dumps([[m.envelope_json for m in messages], {}, self._embed]),
            headers=headers,
            properties={**self._properties, "correlation_id": first.message_id},
            queue=first.queue,
        )

    def publish(self, messages: Sequence[Outgoing]) -> dict[str, redis.ResponseError]:
        """Push every message, one LPUSH per queue in one round trip, keeping their order.
        Envelopes for the same queue travel together, up to ``ENVELOPES_PER_TASK`` in one task
        message: a worker pays Celery's cost per task message, not per envelope.

        Returns the queues whose push Redis refused (e.g. the key is not a list), with the
        error: the messages of the other queues are on theirs. Raises ``BrokerUnavailable``
        if Redis as a whole failed; then some may have been pushed and will be pushed again
        (at-least-once).
        """
        grouped: dict[str, list[Outgoing]] = {}
        for message in messages:
            grouped.setdefault(message.queue, []).append(message)
        by_queue = {
            queue: [
                self.encode(group[i : i + ENVELOPES_PER_TASK])
                for i in range(0, len(group), ENVELOPES_PER_TASK)
            ]
            for queue, group in grouped.items()
        }
        pipe = self.redis.pipeline(transaction=False)
        for queue, payloads in by_queue.items():
            pipe.lpush(queue, *payloads)  # consumers pop from the other end: first in, first out
        try:
            answers = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        refused: dict[str, redis.ResponseError] = {}
        backlogged = False
        for queue, payloads, answer in zip(by_queue, by_queue.values(), answers, strict=True):
            if isinstance(answer, redis.RedisError):
                if broker_wide(answer):
                    raise BrokerUnavailable(f"{type(answer).__name__}: {answer}") from answer
                refused[queue] = cast(redis.ResponseError, answer)
            # LPUSH answers the queue's length: more than was pushed means its workers are behind.
            elif answer > len(payloads):
                backlogged = True
        self.backlogged = backlogged
        return refused

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
