"""What a consumer holds stays in its processing list until it is acknowledged or given back, and
an acknowledgement Redis cannot take still lets go of the message in the worker (prefetch 1).
Against a real Redis (database 15), through kombu's own consumer paths."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
import redis
from kombu import Connection

from common.messaging import broker

URL = "redis://127.0.0.1:6379/15"


class _Unreachable:
    def execute(self) -> None:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A private key prefix and queue per test, cleaned up after."""
    mine = f"_kombu.test-{uuid.uuid4().hex[:8]}."
    yield mine
    client = redis.Redis.from_url(URL)
    for key in client.scan_iter(f"{mine}*"):
        client.delete(key)
    for key in client.scan_iter(f"*{mine.strip('.')}*"):
        client.delete(key)


@pytest.fixture
def client() -> redis.Redis:
    return redis.Redis.from_url(URL)


def _connection(prefix: str) -> Connection:
    options = {"processing_prefix": prefix, "unacked_key": f"{prefix}unacked"}
    return Connection(URL, transport=broker.Transport, transport_options=options)


class Held(NamedTuple):
    connection: Connection
    queue: Any  # kombu's SimpleQueue
    message: Any


@pytest.fixture
def held(prefix: str) -> Iterator[Held]:
    """A consumer of a private queue that has taken its one message, ``{"n": 1}``."""
    with _connection(prefix) as connection:
        queue = connection.SimpleQueue(_queue(prefix))
        queue.put({"n": 1})
        yield Held(connection, queue, queue.get(timeout=5))
        queue.close()


def _processing(client: redis.Redis, prefix: str) -> list[Any]:
    return [
        json.loads(item)
        for key in client.scan_iter(f"{prefix}processing.*")
        for item in client.lrange(key, 0, -1)
    ]


def _body(message: dict[str, Any]) -> Any:
    """The payload of a kombu message as it lies in Redis."""
    return json.loads(base64.b64decode(message["body"]))


def _queue(prefix: str) -> str:
    return f"{prefix.strip('.')}-queue"


def test_a_taken_message_waits_in_the_processing_list_until_it_is_acknowledged(
    prefix: str, client: redis.Redis, held: Held
) -> None:
    assert client.llen(_queue(prefix)) == 0
    assert [_body(m) for m in _processing(client, prefix)] == [{"n": 1}]
    assert client.hlen(f"{prefix}unacked") == 0  # nothing else written per message
    held.message.ack()
    assert _processing(client, prefix) == []


def test_a_failed_ack_frees_the_prefetch_slot_and_is_retried_before_the_next_take(
    prefix: str, client: redis.Redis, held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel: broker.Channel = held.queue.channel
    channel.qos.prefetch_count = 1
    assert not channel.qos.can_consume()

    def unreachable(*_: object, **__: object) -> None:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")

    monkeypatch.setattr(channel, "drop_taken", unreachable)
    held.message.ack()  # kombu's own ack raised here and kept the message counted as in hand
    monkeypatch.undo()

    assert channel.qos.can_consume()  # so the worker takes its next message
    assert len(_processing(client, prefix)) == 1  # still in the broker's keeping
    held.queue.put({"n": 2})
    assert held.queue.get(timeout=5).payload == {"n": 2}
    # The first one was dropped before the second was taken: only the second is held.
    assert [_body(m) for m in _processing(client, prefix)] == [{"n": 2}]


def test_a_failed_ack_of_kombus_own_record_still_frees_the_prefetch_slot(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _connection(prefix) as connection:
        qos: broker.QoS = connection.default_channel.qos  # type: ignore[attr-defined]
        qos.prefetch_count = 1
        broker.virtual.QoS.append(qos, object(), "tag-1")  # taken by basic_get
        assert not qos.can_consume()
        monkeypatch.setattr(qos, "_remove_from_indices", lambda tag: _Unreachable())

        qos.ack("tag-1")

        assert qos.can_consume()


def test_a_requeued_message_goes_to_the_end_of_its_queue_marked_redelivered(
    prefix: str, client: redis.Redis, held: Held
) -> None:
    held.queue.put({"n": 2})

    held.message.requeue()

    assert _processing(client, prefix) == []
    waiting = [json.loads(item) for item in client.lrange(_queue(prefix), 0, -1)]
    assert [_body(m) for m in waiting] == [{"n": 1}, {"n": 2}]  # LPUSH: the end
    assert waiting[0]["properties"]["delivery_info"]["redelivered"] is True


def test_a_message_a_sweep_already_gave_back_is_not_requeued_twice(
    prefix: str, client: redis.Redis, held: Held
) -> None:
    # Paused past its lease: another worker's sweep moved it back to the queue.
    (processing,) = client.scan_iter(f"{prefix}processing.*")
    client.lmove(processing, _queue(prefix), "RIGHT", "RIGHT")

    held.message.requeue()

    assert client.llen(_queue(prefix)) == 1
    assert _processing(client, prefix) == []


def test_what_a_consumer_holds_goes_back_once_when_it_closes(
    prefix: str, client: redis.Redis, held: Held
) -> None:
    held.queue.close()
    held.connection.release()

    waiting = [json.loads(item) for item in client.lrange(_queue(prefix), 0, -1)]
    assert [_body(m) for m in waiting] == [{"n": 1}]
    assert _processing(client, prefix) == []
    assert not list(client.scan_iter(f"{prefix}lease.*"))
