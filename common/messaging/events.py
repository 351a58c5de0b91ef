"""The Celery events every process of a service sends (for Flower), less one.

Workers leave out ``task-started``: in the solo pool a task starts the moment it is received,
so that event told Flower nothing ``task-received`` had not, and each event costs the worker
and Flower CPU (Flower about 0.1 ms per event; a checkout's 8 messages made 24 events).
Flower still shows every task received and then succeeded, failed or retried, with its runtime.

No Django here: a process sends tasks (and builds this dispatcher) before Django is set up.
"""

from __future__ import annotations

from typing import Any

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher

UNSENT_EVENTS = frozenset({"task-started"})


class ServiceEventDispatcher(EventDispatcher):
    def send(self, type: str, *args: Any, **fields: Any) -> Any:
        if type in UNSENT_EVENTS:
            return None
        return super().send(type, *args, **fields)


class ServiceEvents(Events):
    """The app's events (``Celery(events=…)``), with the dispatcher above."""

    dispatcher_cls = "common.messaging.events:ServiceEventDispatcher"
