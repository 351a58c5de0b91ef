"""The one Celery task every message arrives through, and the housekeeping task.

Tasks stay thin: decoding and dispatch here, the exactly-once logic in ``inbox.services``.
"""

from __future__ import annotations

import functools
import json
import random
import traceback
from typing import Any

import redis
from celery import Task, shared_task
from django.conf import settings
from django.db import DatabaseError

from common.idempotency.services import idempotency_prune
from common.inbox.handlers import service_handlers
from common.inbox.models import DeadLetter
from common.inbox.services import dead_letter_record, inbox_handle, inbox_prune
from common.messaging.envelope import InvalidMessage, decode
from common.messaging.transport import CONSUME_TASK
from common.outbox.services import outbox_prune

# Retry delays stay far below the broker's visibility timeout (see common.messaging.celery).
MAX_RETRY_DELAY_S = 60.0


def _retry_delay(retries: int) -> float:
    return min(0.5 * 2**retries, MAX_RETRY_DELAY_S) * random.uniform(0.8, 1.2)


@shared_task(name=CONSUME_TASK, bind=True, acks_late=True, max_retries=None)
def consume(self: Task, *args: Any, **kwargs: Any) -> str:
    well_formed = len(args) == 1 and not kwargs and isinstance(args[0], str)
    raw = args[0] if well_formed else json.dumps({"args": args, "kwargs": kwargs}, default=repr)
    try:
        try:
            if not well_formed:
                raise InvalidMessage("invalid_envelope", "inbox.consume takes one JSON string")
            envelope, payload = decode(raw)
        except InvalidMessage as exc:
            dead_letter_record(
                reason=exc.reason, error=exc.detail, raw_body=raw, message_id=str(self.request.id)
            )
            return "dead"
        handler = service_handlers().get(envelope.type)
        if handler is None:
            dead_letter_record(
                reason=DeadLetter.Reason.NO_HANDLER,
                error=f"{settings.SERVICE_NAME} has no handler for {envelope.type}",
                raw_body=raw,
                message_id=str(envelope.id),
                type_name=envelope.type,
            )
            return "dead"
        try:
            return "handled" if inbox_handle(envelope, payload, handler) else "duplicate"
        except InvalidMessage as exc:  # the handler found it can never apply
            dead_letter_record(
                reason=exc.reason,
                error=exc.detail,
                raw_body=raw,
                message_id=str(envelope.id),
                type_name=envelope.type,
            )
            return "dead"
        except Exception as exc:
            if self.request.retries < settings.INBOX_MAX_RETRIES:
                raise self.retry(exc=exc, countdown=_retry_delay(self.request.retries)) from exc
            dead_letter_record(
                reason=DeadLetter.Reason.HANDLER_ERROR,
                error="".join(traceback.format_exception(exc)),
                raw_body=raw,
                message_id=str(envelope.id),
                type_name=envelope.type,
            )
            return "dead"
    except DatabaseError as exc:
        # Not even the dead-letter table is reachable: keep the message, try again later.
        raise self.retry(exc=exc, countdown=_retry_delay(min(self.request.retries, 6))) from exc


@shared_task(name="housekeeping.prune", acks_late=True)
def prune() -> dict[str, int]:
    """Delete what has outlived its retention: sent outbox rows, inbox ids, idempotency keys."""
    return {
        "outbox": outbox_prune(),
        "inbox": inbox_prune(),
        "idempotency": idempotency_prune(),
    }


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@shared_task(name="transport.noop", ignore_result=True)
def noop(counter: str) -> None:
    """Does nothing but count itself: the transport floor that ``make bench-saga`` measures."""
    _redis().incr(counter)
