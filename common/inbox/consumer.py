"""The Celery worker consumer of every service.

It dead-letters what Celery itself cannot take: Celery's defaults log and drop such messages
(undecodable bodies, pickle or other refused content types, unknown task names). Here each is
written to the dead-letter table with its raw body and error, then acknowledged, so the worker
goes on consuming and nothing vanishes unseen.

It also sends task events (for Flower) in batches: Celery publishes the buffered events at
every turn of its loop, one PUBLISH round trip each time, which cost about half of a worker's
main process under load (which events are sent at all: ``common.messaging.events``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed

from common.inbox.models import DeadLetter
from common.inbox.services import dead_letter_record

logger = logging.getLogger(__name__)

EVENT_FLUSH_EVERY_S = 0.1
PARK_FAILED_PAUSE_S = 1.0


class DeadLetteringConsumer(Consumer):
    _flush_pending = False

    def on_send_event_buffered(self) -> Any:  # celery-types declares a callable return
        # (celery-types lacks the consumer's hub and dispatcher attributes, hence getattr.)
        hub = getattr(self, "hub", None)
        if hub is not None and not self._flush_pending:
            self._flush_pending = True
            hub.call_later(EVENT_FLUSH_EVERY_S, self._flush_batch)

    def _flush_batch(self) -> None:
        self._flush_pending = False
        dispatcher = getattr(self, "event_dispatcher", None)
        if dispatcher is not None:
            dispatcher.flush()

    def _park(self, message: Any, reason: str, error: Exception | str) -> None:
        headers = dict(message.headers or {})
        try:
            dead_letter_record(
                reason=reason,
                error=f"{type(error).__name__}: {error}" if isinstance(error, Exception) else error,
                raw_body=message.body,
                message_id=str(headers.get("id") or ""),
                type_name=str(headers.get("task") or ""),
                headers={
                    "content_type": message.content_type,
                    "content_encoding": message.content_encoding,
                    **{
                        k: repr(v)
                        for k, v in headers.items()
                        if k in {"id", "task", "origin", "argsrepr"}
                    },
                },
            )
        except Exception:
            # Not even parked (the database is down?): give it back to its queue (behind what
            # waits there), so this worker goes on consuming; a prefetch of one would otherwise
            # leave it holding this message, taking nothing else, until restarted.
            logger.exception("could not dead-letter a %s message; requeueing it", reason)
            time.sleep(PARK_FAILED_PAUSE_S)  # the database is down: do not spin on the message
            message.reject(requeue=True)
            return
        message.ack()

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        reason = (
            DeadLetter.Reason.CONTENT_TYPE
            if isinstance(exc, ContentDisallowed)
            else DeadLetter.Reason.UNDECODABLE
        )
        self._park(message, reason, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._park(message, DeadLetter.Reason.UNDECODABLE, "not a Celery task message")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._park(message, DeadLetter.Reason.UNKNOWN_TASK, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        reason = (
            DeadLetter.Reason.CONTENT_TYPE
            if isinstance(exc, ContentDisallowed)
            else DeadLetter.Reason.UNDECODABLE
        )
        self._park(message, reason, exc)
