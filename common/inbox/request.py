"""How a worker settles the message of an ``inbox.consume`` that failed where nobody expected.

``consume`` settles every envelope itself (handled, parked or given back), but an exception can
still escape around it: from a task signal's receiver (a tracing or metrics hook), from Celery's
Django fix-up closing a broken connection before the task, from a bug. Celery then rejects the
message without requeue (``task_acks_on_failure_or_timeout`` is off), which on Redis drops it
just as an acknowledgement would: an envelope neither handled nor parked would be gone. Here such
a message goes back to its queue instead, after a pause so that a fault that lasts does not spin
the worker on it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback  # type: ignore[attr-defined]
from celery import Task
from celery.exceptions import Ignore, Reject, Retry, Terminated, WorkerLostError
from celery.worker.request import Request

logger = logging.getLogger(__name__)

UNEXPECTED_FAILURE_PAUSE_S = 1.0
# What Celery settles on its own terms: a decision of the task, or the worker's own end.
_SETTLED_BY_CELERY = (
    Reject,
    Retry,
    Ignore,
    Terminated,
    WorkerLostError,
    SystemExit,
    KeyboardInterrupt,
    MemoryError,
)


class ConsumeRequest(Request):
    def on_failure(
        self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, Exception) and not isinstance(exc, _SETTLED_BY_CELERY):
            logger.error(
                "inbox.consume failed outside its own handling (%r); requeueing the message",
                exc,
                exc_info=exc,
            )
            time.sleep(UNEXPECTED_FAILURE_PAUSE_S)
            requeue = Reject(exc, requeue=True)
            exc_info = ExceptionInfo((Reject, requeue, exc_info.tb))
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )


class ConsumeTask(Task):
    Request = "common.inbox.request:ConsumeRequest"
