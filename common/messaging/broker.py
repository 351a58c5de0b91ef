"""kombu's Redis transport, with a consumer that never holds a message nowhere, one fix for what
every message costs a worker, and one for a broker that refuses writes.

**No message in no durable place.** kombu takes a message off its queue with ``BRPOP`` and only
afterwards records it as unacknowledged (``unacked``, swept back after the visibility timeout):
a worker that dies in between, or that is frozen while Redis hands it the message and is then
killed, loses it for good. Here a consumer takes it with ``BLMOVE`` into a processing list of
its own, atomically, and records it as unacknowledged in the same transaction that removes it
from that list (one more command in a round trip kombu makes anyway). Each consumer holds a
lease (a key with a TTL, renewed before it waits for a message when a third of it has passed);
every worker's periodic sweep gives the messages in the processing list of a consumer whose
lease expired back to the front of their queue. A consumer that was only paused past its lease
may then hold a message a second worker also gets: delivery stays at least once, and the inbox
drops the duplicate. One queue is waited on at a time (``BLMOVE`` takes one source), and each
queue is one list (no priority lists): a worker consumes its service's one queue.

While a worker waits for a message, kombu answers every other command of the channel (recording
a message as unacknowledged when it arrives, acknowledging it when the task is done) from a new
``redis.Redis`` client object, built from scratch each time. Building it cost about a tenth of
a worker's CPU per message in the saga benchmark. Here the channel builds that client once and
reuses it (a new one if kombu has replaced the channel's connection pool): it draws a socket
from that pool for each command, as the throw-away clients did, so nothing else changes.

When Redis refuses writes (full under ``noeviction``, a read-only replica), kombu's requeue of a
message (``reject(requeue=True)``) fails inside its transaction and the exception kills the
worker. Here the message then stays where it is, in the broker's unacknowledged set (the
transaction changed nothing), the worker only lets go of it locally and goes on, and the
visibility-timeout sweep hands it out again once Redis takes writes. That sweep tolerates the
same refusal, and so does taking a message (``BLMOVE`` is a write): the message stays on its
queue, or in the processing list, and the worker waits a moment and tries again.

Every key of this bookkeeping (processing lists, their registry, leases, the unacknowledged
hash, its index and mutex) is named under the transport option ``processing_prefix`` and
kombu's ``unacked_*_key`` options: one prefix per service, so that each service's Redis user
reaches only its own (common.messaging.redis_acl). The visibility-timeout sweep's mutex is
released with ``EVAL``, not redis-py's ``Lock`` (its ``EVALSHA`` falls back to ``SCRIPT LOAD``,
which no service user may run).

Selected with ``broker_transport`` in ``common.messaging.celery``; the broker URL stays
``redis://``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty
from typing import Any, cast

import redis as redis_py
from kombu.transport import redis, virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

logger = logging.getLogger(__name__)

#: The default prefix of the keys below (one service's own prefix in ``processing_prefix``).
DEFAULT_PREFIX = "_kombu."
#: How long a consumer refused by Redis (full, read-only) waits before it tries again.
REFUSED_PAUSE_S = 1.0

# Gives back what consumers without a lease hold, and what ARGV names (this consumer's own
# lists, when it could not record a message): each message to the end its queue is read from.
_GIVE_BACK = """
local given = 0
local force = {}
for _, list in ipairs(ARGV) do force[list] = true end
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local list = entries[i]
  local lease_and_queue = cjson.decode(entries[i + 1])
  if force[list] or redis.call('EXISTS', lease_and_queue[1]) == 0 then
    while redis.call('LMOVE', list, lease_and_queue[2], 'RIGHT', 'RIGHT') do
      given = given + 1
    end
    if not force[list] then redis.call('HDEL', KEYS[1], list) end
  end
end
return given
"""
# Lets go of the sweep's mutex only if this consumer still holds it (as redis-py's Lock does).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class QoS(redis.QoS):
    channel: Channel
    _vrestore_count: int  # set by kombu's QoS, missing from its type stubs

    def append(self, message: Any, delivery_tag: str) -> None:
        taken, self.channel._taken = self.channel._taken, None
        if taken is None:  # not taken by BLMOVE (kombu's own paths)
            super().append(message, delivery_tag)
            return
        processing, raw = taken
        delivery = message.delivery_info
        record = json.dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        try:
            with self.pipe_or_acquire() as pipe:
                pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()})
                pipe.hset(self.unacked_key, delivery_tag, record)
                pipe.lrem(processing, 1, raw)
                pipe.execute()
        except redis_py.ResponseError as refused:
            # Nothing was written: it stays in the processing list, and goes back to its queue
            # before this consumer takes the next message.
            self.channel._stranded.add(processing)
            logger.warning("Redis refused to record a message as taken (%s); retrying", refused)
            time.sleep(REFUSED_PAUSE_S)
            raise Empty() from refused
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        """Acknowledge on the broker, and let go of the message locally whatever the broker said.

        kombu's ack drops the message from its unacknowledged set in Redis, then locally; when
        Redis cannot be reached (restarting, say) the first step raised, the second never ran,
        and the message stayed counted as in hand: with prefetch 1 the worker never took another
        one, for good (a `make chaos` run found the orchestrator's worker idle for minutes after
        one failed ack). The task's work is committed either way: its entry in the broker's
        unacknowledged set, if Redis still has it, hands the message out again after the
        visibility timeout, and the inbox drops that copy."""
        try:
            cast(Any, self)._remove_from_indices(delivery_tag).execute()  # (not in the stubs)
        except redis_py.RedisError as error:
            logger.warning(
                "could not acknowledge message %s on the broker (%s); it stays unacknowledged "
                "there until the visibility timeout, and its copy will be dropped by the inbox",
                delivery_tag,
                error,
            )
        virtual.QoS.ack(self, delivery_tag)

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
            self.channel.give_back_abandoned()
            self._restore_visible(start=start, num=num, interval=interval)
        except redis_py.ResponseError as refused:
            logger.warning("could not restore unacknowledged messages yet (%s)", refused)

    def _restore_visible(self, *, start: int, num: int, interval: int) -> None:
        """kombu's sweep (every ``interval``-th call: messages unacknowledged for longer than
        the visibility timeout go back to their queue), under a mutex taken with ``SET NX``
        and released with ``EVAL``."""
        self._vrestore_count += 1
        if (self._vrestore_count - 1) % (interval or 1):
            return
        token = uuid.uuid4().hex
        with self.channel.conn_or_acquire() as client:
            if not client.set(self.unacked_mutex_key, token, nx=True, ex=self.unacked_mutex_expire):
                return  # another worker is sweeping
            try:
                ceil = time.time() - self.visibility_timeout
                visible = client.zrange(
                    self.unacked_index_key,
                    ceil,
                    0,
                    desc=True,
                    byscore=True,
                    offset=start if num else None,
                    num=num or None,
                    withscores=True,
                )
                for tag, _score in visible or []:
                    self.restore_by_tag(tag, client)
            finally:
                client.eval(_RELEASE, 1, self.unacked_mutex_key, token)


class Channel(redis.Channel):
    QoS = QoS
    # One list per queue: BLMOVE takes a single source list.
    priority_steps = [0]
    #: Seconds a consumer's processing list stays its own without renewal.
    processing_lease = 30
    #: Where this service's processing lists, their registry and the leases live.
    processing_prefix = DEFAULT_PREFIX
    from_transport_options = (
        *redis.Channel.from_transport_options,
        "processing_lease",
        "processing_prefix",
    )

    _side_client: Any = None
    # Set by kombu's channel, missing from its type stubs.
    _queue_cycle: Any
    connection_errors: tuple[type[Exception], ...]
    _flush_brpop_reauth: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._consumer_id = uuid.uuid4().hex
        self._taken: tuple[str, bytes] | None = None
        self._stranded: set[str] = set()
        self._waiting_on: str | None = None
        self._lease_renewed_at = float("-inf")
        self._leased: set[str] = set()  # processing lists this consumer registered
        super().__init__(*args, **kwargs)
        if self.global_keyprefix:
            raise ValueError("this transport does not take a global_keyprefix")

    @property
    def registry_key(self) -> str:
        """processing list -> JSON ``[lease key, queue]`` of every consumer (of this service)
        that may hold messages."""
        return f"{self.processing_prefix}processing"

    @property
    def lease_key(self) -> str:
        return f"{self.processing_prefix}lease.{self._consumer_id}"

    def processing_key(self, queue: str) -> str:
        return f"{self.processing_prefix}processing.{self._consumer_id}.{queue}"

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._side_client is None or self._side_client.connection_pool is not self.pool:
            self._side_client = cast(Any, self)._create_client()  # (not in the type stubs)
        yield self._side_client

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(1)
        if not queues:
            return
        queue = queues[0]
        self._prepare_to_take()
        self._waiting_on = queue
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        wait = self.brpop_timeout if timeout is None else timeout
        self.client.connection.send_command(
            "BLMOVE", queue, self.processing_key(queue), "RIGHT", "LEFT", wait or 0
        )

    def _prepare_to_take(self) -> None:
        """Renew the lease when a third of it has passed (a long task may have outlived it:
        another worker's sweep found the processing list empty and forgot it), and give back
        what this consumer took but could not record."""
        now = time.monotonic()
        if not self._stranded and now - self._lease_renewed_at < self.processing_lease / 3:
            return
        with self.conn_or_acquire() as client:
            with client.pipeline() as pipe:
                pipe.set(self.lease_key, 1, ex=self.processing_lease)
                for queue in self.active_queues:
                    pipe.hset(
                        self.registry_key,
                        self.processing_key(queue),
                        json.dumps([self.lease_key, queue]),
                    )
                pipe.execute()
            self._leased.update(self.processing_key(queue) for queue in self.active_queues)
            if self._stranded:
                self._give_back(client, sorted(self._stranded))
                self._stranded.clear()
        self._lease_renewed_at = now

    def _brpop_read(self, **options: Any) -> bool:
        queue = self._waiting_on
        try:
            try:
                raw = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                # Disconnect, so that the next turn reconnects.
                self.client.connection.disconnect()
                raise
            except redis_py.ResponseError as refused:  # a write: refused when Redis is full
                logger.warning("Redis refused to hand out a message (%s); retrying", refused)
                time.sleep(REFUSED_PAUSE_S)
                raise Empty() from refused
            if not raw or queue is None:
                raise Empty()
            self._taken = (self.processing_key(queue), raw)
            self._queue_cycle.rotate(queue)
            try:
                payload = loads(bytes_to_str(raw))
            except ValueError:
                logger.error("dropping a queue item that is no kombu message: %r", raw[:200])
                self._taken = None
                with self.conn_or_acquire() as client:
                    client.lrem(self.processing_key(queue), 1, raw)
                raise Empty() from None
            self.connection._deliver(payload, queue)
            return True
        finally:
            if self._taken is not None:  # delivered without being recorded: give it back
                self._stranded.add(self._taken[0])
                self._taken = None
            self._in_poll = None
            self._waiting_on = None
            self._flush_brpop_reauth()

    def give_back_abandoned(self) -> int:
        """Messages taken by consumers that died before recording them go back to their queue."""
        with self.conn_or_acquire() as client:
            given = self._give_back(client, [])
        if given:
            logger.warning("gave back %d message(s) taken by a consumer that died", given)
        return given

    def _give_back(self, client: Any, own: list[str]) -> int:
        return int(client.eval(_GIVE_BACK, 1, self.registry_key, *own))

    def close(self) -> None:
        if not self.closed:
            self._release()
        self._side_client = None
        super().close()

    def _release(self) -> None:
        """On a clean close nothing is in flight: hand back anything left, drop the lease."""
        own = sorted(self._leased)
        if not own:
            return
        failures: tuple[type[Exception], ...] = (*self.connection_errors, redis_py.ResponseError)
        try:
            with self.conn_or_acquire() as client:
                self._give_back(client, own)
                with client.pipeline() as pipe:
                    pipe.hdel(self.registry_key, *own)
                    pipe.delete(self.lease_key)
                    pipe.execute()
        except failures as exc:
            # The lease runs out by itself; the sweep of another worker gives them back.
            logger.warning("could not release this consumer's processing lists (%s)", exc)


class Transport(redis.Transport):
    Channel = Channel
