"""The outbox write API. Only ever called inside the transaction of the change it announces."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common import tracing
from common.messaging.contract import Kind, Payload, message_type
from common.messaging.envelope import Envelope, new_event
from common.messaging.keys import key_ring
from common.messaging.signing import KeyRing
from common.outbox.models import OutboxMessage
from common.retention import prune_in_batches

INSERT_AND_NOTIFY = """
WITH rows AS (
    INSERT INTO outbox_message
        (message_id, type, destination, envelope, status, attempts, available_at, created_at, last_error)
    SELECT m.message_id, m.type, m.destination, m.envelope, 'pending', 0, now(), clock_timestamp(), ''
    FROM jsonb_to_recordset(%s::jsonb) AS m(message_id uuid, type text, destination text, envelope jsonb)
    -- Sending a message again (a stored reply, a requeued dead letter) revives its row, with
    -- the envelope as signed now (by the sender's newest key).
    ON CONFLICT (message_id, destination) DO UPDATE
        SET status = 'pending', attempts = 0, available_at = now(), sent_at = NULL, last_error = '',
            envelope = EXCLUDED.envelope
    RETURNING 1
){also}
SELECT pg_notify(%s, (SELECT count(*) FROM rows)::text)
"""


class Also(NamedTuple):
    """Another data-modifying statement to run in the same round trip as the outbox insert."""

    name: str
    sql: str
    params: Sequence[object]


class OutsideTransaction(RuntimeError):
    """The outbox was written outside a transaction: the message could outlive a rolled-back change."""


def notify_channel(service: str) -> str:
    return f"outbox_{service}"


def _destinations(envelope: Envelope) -> tuple[str, ...]:
    if envelope.kind is Kind.EVENT:
        return message_type(envelope.type).subscribers
    if envelope.destination is None:
        raise ValueError(f"{envelope.type} has no destination")
    return (envelope.destination,)


def _signed_rows(
    envelope: Envelope, destination: str | None, keys: KeyRing, trace: Mapping[str, str]
) -> list[dict[str, object]]:
    """The envelope as written for each of its queues. The key ring's service signs its own
    messages for each queue (the destination is signed too; a re-sent stored reply is signed
    afresh, with the newest key, and carries the trace context of its writing); another
    service's message (a dead letter handed back to this service's queue) keeps its sender's
    signature, so it can only go where it was addressed."""
    body = envelope.to_json_dict()
    mine = keys.signer is not None and envelope.source == keys.signer.service
    if mine and trace:
        body["headers"] = {**body["headers"], **trace}
    rows = []
    for queue in (destination,) if destination else _destinations(envelope):
        if mine:
            document = keys.sign({**body, "destination": queue})
        elif queue == envelope.destination and envelope.signature is not None:
            document = body
        else:
            raise ValueError(f"{envelope.source}'s {envelope.type} cannot be sent to {queue}")
        rows.append(
            {
                "message_id": body["id"],
                "type": envelope.type,
                "destination": queue,
                "envelope": document,
            }
        )
    return rows


def outbox_put(
    *envelopes: Envelope,
    destination: str | None = None,
    also: Sequence[Also] = (),
    keys: KeyRing | None = None,
) -> None:
    """Write messages to the outbox and wake the relays when the transaction commits.

    One statement inserts every row and sends ``NOTIFY``; PostgreSQL delivers the notification
    only on commit, and never if the transaction rolls back. ``destination`` overrides where
    the messages go (used to hand a dead letter back to this service's own queue). ``also``
    joins more statements (the inbox storing a reply, a saga's transition) to the same round
    trip; they run even when there is no message to write. ``keys`` signs them (this
    service's key ring by default).
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise OutsideTransaction("outbox_put must run inside transaction.atomic()")
    if not envelopes and not also:
        return
    ctes = "".join(f", {a.name} AS ({a.sql})" for a in also)
    also_params = [p for a in also for p in a.params]
    # The trace context is taken here, as the rows are inserted (not when the relay sends them).
    with tracing.outgoing(e.type for e in envelopes) if envelopes else nullcontext({}) as trace:
        rows: list[dict[str, object]] = []
        if envelopes:
            ring = keys or key_ring()
            rows = [row for e in envelopes for row in _signed_rows(e, destination, ring, trace)]
        if rows:
            sql = INSERT_AND_NOTIFY.format(also=ctes)
            params = [json.dumps(rows), *also_params, notify_channel(settings.SERVICE_NAME)]
        elif also:
            sql, params = f"WITH {ctes.removeprefix(', ')} SELECT 1", also_params
        else:
            return
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def outbox_event(type_name: str, payload: Payload) -> Envelope:
    envelope = new_event(type_name, payload, source=settings.SERVICE_NAME)
    outbox_put(envelope)
    return envelope


def outbox_requeue(*, ids: list[int] | None = None) -> int:
    """Give dead rows (all, or the given ones) a fresh set of attempts; returns how many."""
    with transaction.atomic():
        rows = OutboxMessage.objects.filter(status=OutboxMessage.Status.DEAD)
        if ids is not None:
            rows = rows.filter(pk__in=ids)
        count = rows.update(
            status=OutboxMessage.Status.PENDING,
            attempts=0,
            available_at=timezone.now(),
            last_error="",
        )
        if count:
            with transaction.get_connection().cursor() as cursor:
                cursor.execute(
                    "SELECT pg_notify(%s, %s)", [notify_channel(settings.SERVICE_NAME), str(count)]
                )
    return count


REPLAY = f"""
WITH replayed AS (
    UPDATE {OutboxMessage._meta.db_table}
    SET status = 'pending', available_at = now(), sent_at = NULL
    WHERE status = 'sent' AND sent_at >= %s
    RETURNING 1
)
SELECT count(*), pg_notify(%s, count(*)::text) FROM replayed
"""  # noqa: S608 — the table name is ours


def outbox_replay(*, since: datetime) -> int:
    """Publish again every row sent since ``since`` (the broker lost them: a flush, a restart
    without persistence, a failover, a restored backup); returns how many.

    They become pending again and keep their ids, so the relays send them in their original
    order, before anything written later; the receivers' inboxes drop the copies they had
    already handled.
    """
    with transaction.atomic(), transaction.get_connection().cursor() as cursor:
        # Durable before the relay records the broker as whole again (relays commit async).
        cursor.execute("SET LOCAL synchronous_commit TO on")
        cursor.execute(REPLAY, [since, notify_channel(settings.SERVICE_NAME)])
        (count, _) = cursor.fetchone()
    return int(count)


def outbox_prune(*, batch_size: int | None = None) -> int:
    """Delete sent rows older than the retention period, a small batch per transaction."""
    cutoff = timezone.now() - timedelta(hours=settings.OUTBOX_RETENTION_HOURS)
    return prune_in_batches(
        OutboxMessage.objects.filter(status=OutboxMessage.Status.SENT, sent_at__lt=cutoff),
        order_by="sent_at",
        batch_size=batch_size or settings.PRUNE_BATCH_SIZE,
    )
