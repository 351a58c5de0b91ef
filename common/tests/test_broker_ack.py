"""An ack that Redis cannot take still lets go of the message in the worker (prefetch 1)."""

from __future__ import annotations

import pytest
import redis
from kombu import Connection

from common.messaging import broker


class _Unreachable:
    def execute(self) -> None:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")


def test_a_failed_ack_still_frees_the_prefetch_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    with Connection("redis://127.0.0.1:6379/15", transport=broker.Transport) as connection:
        qos: broker.QoS = connection.default_channel.qos  # type: ignore[attr-defined]
        qos.prefetch_count = 1
        broker.virtual.QoS.append(qos, object(), "tag-1")  # the message the task had
        assert not qos.can_consume()
        monkeypatch.setattr(qos, "_remove_from_indices", lambda tag: _Unreachable())

        qos.ack("tag-1")  # kombu's own ack raised here and kept the message counted as in hand

        assert qos.can_consume()  # so the worker takes its next message
