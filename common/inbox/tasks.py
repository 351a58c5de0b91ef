"""The one Celery task every message arrives through, and the housekeeping task.

Tasks stay thin: decoding and dispatch here, the exactly-once logic in ``inbox.services``.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from celery import Task, shared_task
from celery.exceptions import Reject
from django.conf import settings
from django.db import DatabaseError
from django.utils.module_loading import import_string

from common import tracing
from common.idempotency.services import idempotency_prune
from common.inbox.handlers import service_handlers
from common.inbox.models import DeadLetter
from common.inbox.request import ConsumeTask
from common.inbox.services import (
    dead_letter_prune,
    dead_letter_record,
    inbox_handle,
    inbox_prune,
)
from common.messaging.envelope import Envelope, InvalidMessage, decode
from common.messaging.transport import CONSUME_TASK, names_of
from common.outbox.services import outbox_prune

# Retry delays stay far below the broker's visibility timeout (see common.messaging.celery).
MAX_RETRY_DELAY_S = 60.0

logger = logging.getLogger(__name__)


def _retry_delay(retries: int) -> float:
    return min(0.5 * 2**retries, MAX_RETRY_DELAY_S) * random.uniform(0.8, 1.2)


class Fate(StrEnum):
    """What became of one envelope. Only the first three let its task message be acknowledged."""

    HANDLED = "handled"
    DUPLICATE = "duplicate"  # handled before: nothing changed (a stored reply was re-sent)
    PARKED = "dead"  # in the dead-letter table
    GIVEN_BACK = "given_back"  # to the broker, to be tried again later


@dataclass(frozen=True)
class Outcome:
    fate: Fate
    error: Exception | None = None


@shared_task(
    name=CONSUME_TASK,
    bind=True,
    acks_late=True,
    max_retries=None,
    base=ConsumeTask,  # an exception escaping around the task requeues its message
)
def consume(self: Task, *args: Any, **kwargs: Any) -> str:
    """Handle the envelopes this message carries (one, or a few the relay sent together), each
    in its own transaction and each exactly once. Every envelope is handled, parked or given
    back; the given-back ones travel together in a retry published before this message is
    acknowledged, or, if that publish fails, this whole message goes back on its queue."""
    well_formed = bool(args) and not kwargs and all(isinstance(arg, str) for arg in args)
    retries = self.request.retries
    if not well_formed:
        outcome = _park_malformed(args, kwargs, task_id=str(self.request.id))
        if outcome.fate is Fate.GIVEN_BACK:
            _give_back(self, args, kwargs, outcome)
        return _settled([outcome])
    outcomes = [consume_one(raw, task_id=str(self.request.id), retries=retries) for raw in args]
    given_back = [
        (raw, o) for raw, o in zip(args, outcomes, strict=True) if o.fate is Fate.GIVEN_BACK
    ]
    if given_back:
        _give_back(self, tuple(raw for raw, _ in given_back), {}, given_back[0][1])
    return _settled(outcomes)


class Parked(Reject):
    """A task message some of whose envelopes went to the dead-letter table. It is acknowledged
    as a handled one is (``requeue=False``: the letter holds the envelope), but Celery reports
    it as failed (then rejected) rather than succeeded, so Flower shows the task as what it is."""

    def __init__(self, fates: str) -> None:
        super().__init__(f"dead-lettered ({fates})", requeue=False)
        self.fates = fates


def _settled(outcomes: list[Outcome]) -> str:
    """The fates, comma-separated, as the task's result; raises ``Parked`` if any was parked."""
    fates = ",".join(o.fate for o in outcomes)
    if any(o.fate is Fate.PARKED for o in outcomes):
        raise Parked(fates)
    return fates


def _give_back(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], outcome: Outcome) -> None:
    """Publish a retry of these envelopes (acknowledging this message), or requeue this message
    if the broker refuses the retry: Celery's ``retry`` would reject it without requeue, and
    the envelopes would be gone."""
    countdown = _retry_delay(min(task.request.retries, 6))
    try:
        raise task.retry(
            args=args,
            kwargs=kwargs,
            exc=outcome.error,
            countdown=countdown,
            argsrepr=_names(args),  # type: ignore[call-arg]  # retry passes options on; the stubs lack them
        )
    except Reject as refused:
        cause = refused.args[0] if refused.args else refused
        logger.warning("could not publish a retry (%r); requeueing the message", cause)
        raise Reject(cause, requeue=True) from outcome.error


def _names(args: tuple[Any, ...]) -> str:
    """The retry's argsrepr, as the relay writes it: each envelope's type and id, so Flower
    finds every envelope given back (a body that is no envelope is named by what it is)."""
    named = []
    for arg in args:
        try:
            document = json.loads(arg) if isinstance(arg, str) else None
        except ValueError:
            document = None
        if isinstance(document, dict):
            named.append((str(document.get("type")), document.get("id")))
        else:
            named.append(("not-an-envelope", type(arg).__name__))
    return names_of(named)


def consume_one(raw: str, *, task_id: str, retries: int) -> Outcome:
    """One envelope's fate. A failure that is not the envelope's own (the database down while
    it is parked, or any error nobody foresaw) gives it back rather than lose it."""
    try:
        return _handle_or_park(raw, task_id=task_id, retries=retries)
    except DatabaseError as exc:  # not even the dead-letter table: keep it for later
        return Outcome(Fate.GIVEN_BACK, exc)
    except Exception as exc:
        logger.exception("unexpected error consuming a message; giving it back")
        return Outcome(Fate.GIVEN_BACK, exc)


def _handle_or_park(raw: str, *, task_id: str, retries: int) -> Outcome:
    try:
        envelope, payload = decode(raw)
    except InvalidMessage as exc:
        return _park(raw, reason=exc.reason, error=exc.detail, message_id=task_id)
    # Only an authentic envelope's trace context is believed: decode checked its signature.
    with tracing.consuming(envelope):
        return _dispatch(raw, envelope, payload, retries=retries)


def _dispatch(raw: str, envelope: Envelope, payload: Any, *, retries: int) -> Outcome:
    handler = service_handlers().get(envelope.type)
    if handler is None:
        return _park(
            raw,
            reason=DeadLetter.Reason.NO_HANDLER,
            error=f"{settings.SERVICE_NAME} has no handler for {envelope.type}",
            envelope=envelope,
        )
    try:
        handled = inbox_handle(envelope, payload, handler)
    except InvalidMessage as exc:  # the handler found it can never apply
        return _park(raw, reason=exc.reason, error=exc.detail, envelope=envelope)
    except Exception as exc:  # database errors of the handler included
        return _handler_failed(raw, envelope, exc, retries=retries)
    return Outcome(Fate.HANDLED if handled else Fate.DUPLICATE)


# A handler's errors that say the message itself is wrong (a malformed saga id, a missing key,
# a value of the wrong type): the same message fails the same way every time.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (ValueError, LookupError, TypeError)


def _handler_failed(raw: str, envelope: Envelope, error: Exception, *, retries: int) -> Outcome:
    """Given back for a later try, until the retries are spent; then parked with its traceback.
    A permanent error (``PERMANENT_ERRORS``) is parked at once: no retry can mend it."""
    if retries < settings.INBOX_MAX_RETRIES and not isinstance(error, PERMANENT_ERRORS):
        return Outcome(Fate.GIVEN_BACK, error)
    return _park(
        raw,
        reason=DeadLetter.Reason.HANDLER_ERROR,
        error="".join(traceback.format_exception(error)),
        envelope=envelope,
    )


def _park(
    raw: str,
    *,
    reason: DeadLetter.Reason | str,
    error: str,
    envelope: Envelope | None = None,
    message_id: str = "",
) -> Outcome:
    dead_letter_record(
        reason=reason,
        error=error,
        raw_body=raw,
        message_id=str(envelope.id) if envelope else message_id,
        type_name=envelope.type if envelope else "",
    )
    return Outcome(Fate.PARKED)


def _park_malformed(args: tuple[Any, ...], kwargs: dict[str, Any], *, task_id: str) -> Outcome:
    raw = json.dumps({"args": args, "kwargs": kwargs}, default=repr)
    try:
        return _park(
            raw,
            reason="invalid_envelope",
            error="inbox.consume takes envelopes as JSON strings",
            message_id=task_id,
        )
    except DatabaseError as exc:
        return Outcome(Fate.GIVEN_BACK, exc)


@shared_task(name="housekeeping.prune", acks_late=True)
def prune() -> dict[str, int]:
    """Delete what has outlived its retention: sent outbox rows, inbox ids, dead letters,
    idempotency keys, and whatever the service adds (``HOUSEKEEPING_PRUNERS``: its sagas)."""
    counts = {
        "outbox": outbox_prune(),
        "inbox": inbox_prune(),
        "dead_letters": dead_letter_prune(),
        "idempotency": idempotency_prune(),
    }
    for name, path in settings.HOUSEKEEPING_PRUNERS.items():
        counts[name] = import_string(path)()
    return counts


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@shared_task(name="transport.noop", ignore_result=True)
def noop(counter: str) -> None:
    """Does nothing but count itself: the transport floor that ``make bench-saga`` measures."""
    _redis().incr(counter)
