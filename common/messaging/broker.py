"""kombu's Redis transport, with a consumer that never holds a message nowhere and writes no
bookkeeping per message, one fix for what every message costs a worker, and one for a broker
that refuses writes.

**No message in no durable place.** kombu takes a message off its queue with ``BRPOP`` and only
afterwards records it as unacknowledged (``unacked``, swept back after the visibility timeout):
a worker that dies in between, or that is frozen while Redis hands it the message and is then
killed, loses it for good. Here a consumer takes it with ``BLMOVE`` into a processing list of
its own, atomically, and the message stays there until it is acknowledged (``LREM``) or given
back (requeued): the processing list is this transport's record of what is unacknowledged, so
nothing else is written per message (kombu wrote its unacknowledged hash and index on taking a
message, a round trip of three commands, and a tenth of the orchestrator worker's time).

Each consumer holds a lease (a key with a TTL as long as the visibility timeout, renewed before
it waits for a message when a tenth of it has passed): a task may run for nine tenths of the
visibility timeout before its message is at risk of a second delivery, as with kombu's own
sweep. Every worker's periodic sweep gives the messages in the processing list of a consumer
whose lease expired (it died, or was stopped) back to the front of their queue. A consumer that
was only paused past its lease may then hold a message a second worker also gets: delivery stays
at least once, and the inbox drops the duplicate. One queue is waited on at a time (``BLMOVE``
takes one source), and each queue is one list (no priority lists): a worker consumes its
service's one queue.

While a worker waits for a message, kombu answers every other command of the channel
(acknowledging a message when its task is done, say) from a new ``redis.Redis`` client object,
built from scratch each time. Building it cost about a tenth of a worker's CPU per message in
the saga benchmark. Here the channel builds that client once and reuses it (a new one if kombu
has replaced the channel's connection pool): it draws a socket from that pool for each command,
as the throw-away clients did, so nothing else changes.

When Redis cannot take a command (full under ``noeviction``, a read-only replica, restarting),
the message it was about stays in the processing list, the worker lets go of it locally and goes
on, and the consumer tries again before it takes its next message: an acknowledgement that
failed, or a requeue. Taking a message (``BLMOVE`` is a write) and renewing the lease tolerate
the same refusal: the worker waits a moment and tries again.

Every key of this bookkeeping (processing lists, their registry, leases; kombu's unacknowledged
hash, its index and mutex, for a message taken by kombu's own ``basic_get``) is named under the
transport option ``processing_prefix`` and kombu's ``unacked_*_key`` options: one prefix per
service, so that each service's Redis user reaches only its own (common.messaging.redis_acl).
The visibility-timeout sweep's mutex is released with ``EVAL``, not redis-py's ``Lock`` (its
``EVALSHA`` falls back to ``SCRIPT LOAD``, which no service user may run).

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
from typing import Any, NamedTuple, cast

import redis as redis_py
from kombu.transport import redis, virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

#: The default prefix of the keys below (one service's own prefix in ``processing_prefix``).
DEFAULT_PREFIX = "_kombu."
#: How long a consumer refused by Redis (full, read-only) waits before it tries again.
REFUSED_PAUSE_S = 1.0

# Gives back what consumers without a lease hold, and what ARGV names (this consumer's own
# lists, on a clean close): each message to the end its queue is read from.
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
# Gives one message back to its queue (ARGV[3]: LPUSH to its end, RPUSH to its front) if this
# consumer's processing list still holds it: a sweep may have given it back already, after a
# pause that outlived the lease. LREM first: a script that has written may go on writing on a
# full server, so the message is never half moved.
_REQUEUE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call(ARGV[3], KEYS[2], ARGV[2])
  return 1
end
return 0
"""
# Lets go of the sweep's mutex only if this consumer still holds it (as redis-py's Lock does).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Taken(NamedTuple):
    """A message this consumer took: where it waits until acknowledged, and its bytes there."""

    processing: str
    queue: str
    raw: bytes


class QoS(redis.QoS):
    channel: Channel
    _vrestore_count: int  # set by kombu's QoS, missing from its type stubs

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[str, Taken] = {}  # delivery tag -> the message in a processing list

    @property
    def _in_hand(self) -> dict[str, Any]:
        """kombu's delivered messages by tag (optional only in its type stubs)."""
        return cast(dict[str, Any], self._delivered)

    def append(self, message: Any, delivery_tag: str) -> None:
        taken, self.channel._taken = self.channel._taken, None
        if taken is None:  # not taken by BLMOVE (kombu's own paths): kombu records it
            super().append(message, delivery_tag)
            return
        self._held[delivery_tag] = taken  # already in a durable place: nothing to write
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        """Acknowledge on the broker, and let go of the message locally whatever the broker said.

        kombu's ack dropped the message from its unacknowledged set in Redis, then locally; when
        Redis could not be reached (restarting, say) the first step raised, the second never ran,
        and the message stayed counted as in hand: with prefetch 1 the worker never took another
        one, for good (a `make chaos` run found the orchestrator's worker idle for minutes after
        one failed ack). The task's work is committed either way: the consumer drops the message
        from its processing list before it takes the next one (and if Redis lost it meanwhile,
        or a sweep gave it back, the inbox drops the copy)."""
        taken = self._held.pop(delivery_tag, None)
        try:
            if taken is None:
                cast(Any, self)._remove_from_indices(delivery_tag).execute()  # (not in the stubs)
            else:
                self.channel.drop_taken(taken)
        except redis_py.RedisError as error:
            if taken is not None:
                self.channel._unacked.add(taken)
            logger.warning(
                "could not acknowledge message %s on the broker (%s); it stays in the broker's "
                "keeping until it can be, and a copy handed out again is dropped by the inbox",
                delivery_tag,
                error,
            )
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if not requeue:  # dropped, as kombu's reject without requeue drops it
            self.ack(delivery_tag)
            return
        taken = self._held.pop(delivery_tag, None)
        try:
            if taken is None:
                super().reject(delivery_tag, requeue=True)
                return
            # To the end of its queue, as kombu's requeue puts it.
            self.channel.requeue_taken(taken, self._in_hand[delivery_tag], "LPUSH")
        except redis_py.ResponseError as refused:
            if taken is not None:
                self.channel._stranded.add(taken)
            logger.warning(
                "Redis refused to requeue message %s (%s): it stays in the broker's keeping and "
                "is handed out again once Redis takes writes",
                delivery_tag,
                refused,
            )
        virtual.QoS.ack(self, delivery_tag)  # let go locally: take the next message

    def restore_unacked(self, client: Any = None) -> None:
        """At shutdown (or when kombu replaces the channel): what this consumer holds goes back
        to the front of its queue, unless it went back already."""
        held, self._held = self._held, {}
        with self.channel.conn_or_acquire(client) as client:
            for tag, message in self._in_hand.items():
                if tag in held:
                    self.channel.requeue_taken(held[tag], message, "RPUSH", client)
                else:
                    self.restore_by_tag(tag, client=client)
        self._in_hand.clear()

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        try:
            self.channel.give_back_abandoned()
            self._restore_visible(start=start, num=num, interval=interval)
        except redis_py.ResponseError as refused:
            logger.warning("could not restore unacknowledged messages yet (%s)", refused)

    def _restore_visible(self, *, start: int, num: int, interval: int) -> None:
        """kombu's sweep of its own unacknowledged set (messages taken by ``basic_get``; every
        ``interval``-th call: those unacknowledged for longer than the visibility timeout go
        back to their queue), under a mutex taken with ``SET NX`` and released with ``EVAL``."""
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
    processing_lease = 300
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
        self._taken: Taken | None = None
        self._stranded: set[Taken] = set()  # to go back to their queue before the next take
        self._unacked: set[Taken] = set()  # handled, to drop before the next take
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

    def drop_taken(self, taken: Taken, client: Any = None) -> None:
        """Acknowledge: the message leaves the processing list (one copy of it, if a message
        with the same bytes was taken twice)."""
        with self.conn_or_acquire(client) as client:
            client.lrem(taken.processing, 1, taken.raw)

    def requeue_taken(self, taken: Taken, message: Any, push: str, client: Any = None) -> None:
        """Back to its queue, marked as redelivered (as kombu's restore marks it), if the
        processing list still holds it."""
        payload = message._raw
        try:
            payload["headers"]["redelivered"] = True
            payload["properties"]["delivery_info"]["redelivered"] = True
        except (KeyError, TypeError):
            pass
        self._requeue(taken, dumps(payload), push, client)

    def _requeue(self, taken: Taken, raw: bytes | str, push: str, client: Any = None) -> None:
        with self.conn_or_acquire(client) as client:
            client.eval(_REQUEUE, 2, taken.processing, taken.queue, taken.raw, raw, push)

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
        """Settle what Redis could not take earlier (acknowledgements, requeues), and renew the
        lease when a tenth of it has passed (a task that outlived it lost its processing list
        to another worker's sweep)."""
        now = time.monotonic()
        due = now - self._lease_renewed_at >= self.processing_lease / 10
        if not (due or self._stranded or self._unacked):
            return
        try:
            with self.conn_or_acquire() as client:
                self._settle(client)
                if due:
                    self._renew_lease(client)
                    self._lease_renewed_at = now
        except redis_py.ResponseError as refused:
            # Full or read-only: what is held stays held, in a durable place; tried again on
            # the next turn. (A connection error goes up to kombu, which reconnects.)
            logger.warning("Redis refused a consumer's upkeep (%s); retrying", refused)
            time.sleep(REFUSED_PAUSE_S)

    def _settle(self, client: Any) -> None:
        while self._unacked:
            taken = next(iter(self._unacked))
            self.drop_taken(taken, client)
            self._unacked.discard(taken)
        while self._stranded:
            taken = next(iter(self._stranded))
            self._requeue(taken, taken.raw, "RPUSH", client)  # never delivered: as it was
            self._stranded.discard(taken)

    def _renew_lease(self, client: Any) -> None:
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
            self._taken = Taken(self.processing_key(queue), queue, raw)
            self._queue_cycle.rotate(queue)
            try:
                payload = loads(bytes_to_str(raw))
            except ValueError:
                logger.error("dropping a queue item that is no kombu message: %r", raw[:200])
                taken, self._taken = self._taken, None
                self.drop_taken(taken)
                raise Empty() from None
            self.connection._deliver(payload, queue)
            return True
        finally:
            if self._taken is not None:  # delivered without being held: give it back
                self._stranded.add(self._taken)
                self._taken = None
            self._in_poll = None
            self._waiting_on = None
            self._flush_brpop_reauth()

    def give_back_abandoned(self) -> int:
        """Messages held by consumers whose lease ran out go back to their queue."""
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
        """On a clean close: drop what was handled, hand back the rest, drop the lease."""
        own = sorted(self._leased)
        if not own:
            return
        failures: tuple[type[Exception], ...] = (*self.connection_errors, redis_py.ResponseError)
        try:
            with self.conn_or_acquire() as client:
                self._settle(client)
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
