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
    """Handle the envelopes this message carries (one, or a few the relay sent together), each
    in its own transaction and each exactly once. Those that failed for a transient reason are
    sent again together, later; the others are done, handled or dead-lettered."""
    well_formed = bool(args) and not kwargs and all(isinstance(arg, str) for arg in args)
    if not well_formed:
        raw = json.dumps({"args": args, "kwargs": kwargs}, default=repr)
        try:
            dead_letter_record(
                reason="invalid_envelope",
                error="inbox.consume takes envelopes as JSON strings",
                raw_body=raw,
                message_id=str(self.request.id),
            )
        except DatabaseError as exc:
            raise self.retry(exc=exc, countdown=_retry_delay(min(self.request.retries, 6))) from exc
        return "dead"
    outcomes: list[str] = []
    again: list[str] = []
    error: Exception | None = None
    for raw in args:
        try:
            try:
                outcomes.append(consume_one(raw, str(self.request.id)))
            except Transient as failed:
                if self.request.retries < settings.INBOX_MAX_RETRIES:
                    again.append(raw)
                    error = failed.error
                else:
                    outcomes.append(dead_handler_error(raw, failed))
        except DatabaseError as exc:  # not even the dead-letter table: keep it for later
            again.append(raw)
            error = exc
    if error is not None:
        raise self.retry(
            args=tuple(again), exc=error, countdown=_retry_delay(min(self.request.retries, 6))
        ) from error
    return ",".join(outcomes)


# A handler's errors that say the message itself is wrong (a malformed saga id, a missing key,
# a value of the wrong type): the same message fails the same way every time.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (ValueError, LookupError, TypeError)


class Transient(Exception):
    """A handler failed for a reason that may pass: the envelope is given back for later."""

    def __init__(self, envelope: Any, error: Exception) -> None:
        self.envelope, self.error = envelope, error


def consume_one(raw: str, task_id: str) -> str:
    """One envelope's fate: "handled", "duplicate" or "dead", or ``Transient`` to give it back.
    (The simulator calls it as the task does, in place of Celery.)"""
    try:
        envelope, payload = decode(raw)
    except InvalidMessage as exc:
        dead_letter_record(reason=exc.reason, error=exc.detail, raw_body=raw, message_id=task_id)
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
        invalid = exc
    except PERMANENT_ERRORS as exc:  # no retry can mend it: parked at once, with its reason
        return dead_handler_error(raw, Transient(envelope, exc))
    except Exception as exc:  # database errors of the handler included: retried, then parked
        raise Transient(envelope, exc) from exc
    dead_letter_record(
        reason=invalid.reason,
        error=invalid.detail,
        raw_body=raw,
        message_id=str(envelope.id),
        type_name=envelope.type,
    )
    return "dead"


def dead_handler_error(raw: str, transient: Transient) -> str:
    dead_letter_record(
        reason=DeadLetter.Reason.HANDLER_ERROR,
        error="".join(traceback.format_exception(transient.error)),
        raw_body=raw,
        message_id=str(transient.envelope.id),
        type_name=transient.envelope.type,
    )
    return "dead"


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
