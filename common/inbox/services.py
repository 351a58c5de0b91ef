"""Handling a received message exactly once, and parking the ones that cannot be handled."""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common.api.errors import BusinessError
from common.inbox import metrics
from common.inbox.handlers import Handler
from common.inbox.models import DeadLetter, InboxMessage
from common.messaging.contract import Kind, Reply
from common.messaging.envelope import (
    Envelope,
    InvalidMessage,
    causation_of,
    caused_by,
    decode,
    new_reply,
)
from common.outbox.services import Also, outbox_put
from common.retention import prune_in_batches
from common.transactions import message_handler_transaction

logger = logging.getLogger(__name__)

RECORD = f"""
INSERT INTO {InboxMessage._meta.db_table} (message_id, type, source, received_at)
VALUES (%s, %s, %s, now())
ON CONFLICT (message_id) DO NOTHING
RETURNING 1
"""  # noqa: S608 — the table name is ours

KEEP_REPLY = f"UPDATE {InboxMessage._meta.db_table} SET reply = %s::jsonb WHERE message_id = %s"  # noqa: S608


def inbox_handle(envelope: Envelope, payload: Any, handler: Handler) -> bool:
    """Apply a message once. Returns False for a duplicate, which changes nothing.

    The inbox row, the domain change and any reply commit together. A second delivery of the
    same message id — even one running at the same moment in another worker — waits on the
    inbox row's unique key, then finds it and only re-sends the reply stored the first time.
    A command refused with ``BusinessError`` rolls the whole transaction back (no savepoint on
    the common path), then records the message and its failure reply in a new one.
    """
    try:
        with transaction.atomic(), caused_by(**causation_of(envelope)):
            if not _record_first_time(envelope):
                return False
            with message_handler_transaction():
                result = handler(envelope, payload)
            if envelope.kind is Kind.COMMAND:
                _reply(
                    envelope,
                    result if isinstance(result, Reply) else Reply(ok=True, result=result or {}),
                )
    except BusinessError as refused:
        if envelope.kind is not Kind.COMMAND:
            raise
        with transaction.atomic(), caused_by(**causation_of(envelope)):
            if not _record_first_time(envelope):
                return False
            _reply(envelope, Reply(ok=False, reason=refused.code, result=refused.extra))
    metrics.HANDLED.labels(envelope.type).inc()
    return True


def _record_first_time(envelope: Envelope) -> bool:
    """Insert the message id; for a duplicate, re-send the stored reply and return False."""
    with connection.cursor() as cursor:
        cursor.execute(RECORD, [envelope.id, envelope.type, envelope.source])
        if cursor.fetchone() is not None:
            return True
    _resend_stored_reply(envelope)
    metrics.DUPLICATES.labels(envelope.type).inc()
    return False


def _reply(command: Envelope, answer: Reply) -> None:
    """Write the reply to the outbox and keep it with the inbox row, in one round trip."""
    reply = new_reply(command, answer, source=settings.SERVICE_NAME)
    keep = Also("kept", KEEP_REPLY, [json.dumps(reply.to_json_dict()), command.id])
    outbox_put(reply, also=[keep])


def _resend_stored_reply(envelope: Envelope) -> None:
    if envelope.kind is not Kind.COMMAND:
        return
    stored = InboxMessage.objects.filter(pk=envelope.id).values_list("reply", flat=True).first()
    if stored is not None:
        outbox_put(Envelope.model_validate(stored))


def storable_text(body: Any) -> str:
    """The body as text PostgreSQL can store: UTF-8 without NUL bytes, else base64 of the bytes."""
    raw = body if isinstance(body, bytes) else str(body).encode("utf-8", errors="surrogateescape")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        return "base64:" + base64.b64encode(raw).decode()
    return text


def dead_letter_record(
    *,
    reason: DeadLetter.Reason | str,
    error: str,
    raw_body: str | bytes = "",
    message_id: str = "",
    type_name: str = "",
    headers: dict[str, Any] | None = None,
) -> DeadLetter:
    with transaction.atomic():
        letter = DeadLetter.objects.create(
            reason=reason,
            error=storable_text(error)[:10_000],
            raw_body=storable_text(raw_body)[:1_000_000],
            message_id=message_id[:64],
            type=type_name[:100],
            headers=headers or {},
        )
    metrics.DEAD_LETTERS.labels(str(reason)).inc()
    logger.error("dead-lettered message %s (%s): %s", message_id or "?", reason, error[:300])
    return letter


def dead_letter_retry(*, ids: list[int]) -> int:
    """Hand dead letters back to this service's own queue through the outbox (after a fix).

    Only letters whose body is a valid message can be retried (``dead_letter_refusal`` says
    why another cannot); returns how many were.
    """
    retried = 0
    with transaction.atomic():
        for letter in DeadLetter.objects.select_for_update().filter(
            pk__in=ids, retried_at__isnull=True
        ):
            try:
                envelope, _ = decode(letter.raw_body)
            except InvalidMessage:
                continue
            outbox_put(envelope, destination=settings.SERVICE_NAME)
            letter.retried_at = timezone.now()
            letter.save(update_fields=["retried_at"])
            retried += 1
    return retried


def dead_letter_refusal(letter: DeadLetter) -> str | None:
    """Why ``dead_letter_retry`` would not hand this letter back, or None if it would."""
    if letter.retried_at is not None:
        return f"it was handed back already, at {letter.retried_at:%Y-%m-%d %H:%M:%S}"
    try:
        decode(letter.raw_body)
    except InvalidMessage as exc:
        return f"its body is no message this service accepts ({exc.reason}: {exc.detail[:200]})"
    return None


def inbox_prune(*, batch_size: int | None = None) -> int:
    """Forget handled message ids older than the retention period (far beyond any redelivery)."""
    cutoff = timezone.now() - timedelta(hours=settings.INBOX_RETENTION_HOURS)
    return prune_in_batches(
        InboxMessage.objects.filter(received_at__lt=cutoff),
        order_by="received_at",
        batch_size=batch_size or settings.PRUNE_BATCH_SIZE,
    )


def dead_letter_prune(*, batch_size: int | None = None) -> int:
    """Delete dead letters received longer ago than their retention period (long enough for an
    operator to look at, fix and retry them)."""
    cutoff = timezone.now() - timedelta(hours=settings.DEAD_LETTER_RETENTION_HOURS)
    return prune_in_batches(
        DeadLetter.objects.filter(received_at__lt=cutoff),
        order_by="received_at",
        batch_size=batch_size or settings.PRUNE_BATCH_SIZE,
    )
