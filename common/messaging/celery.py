"""The Celery application of a service: Redis broker, JSON only, at-least-once delivery."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import task_prerun, worker_init, worker_process_init, worker_ready

from common.messaging.redis_acl import broker_keys
from common.messaging.routing import SERVICES

# Longer than any task may run, so Redis never hands an unacknowledged message to a second
# worker while the first still holds it; short enough that a message held by a worker that died
# comes back within minutes. It is the lease a consumer holds on the messages in its processing
# list (see common.messaging.broker), renewed while the worker's loop runs (a retry's countdown
# does not count against it).
VISIBILITY_TIMEOUT_S = 300


def transport_options(service: str, visibility_timeout_s: int) -> dict[str, Any]:
    """Redis hands an unacknowledged message (its worker died) out again after the visibility
    timeout: the consumer's lease on its processing list (common.messaging.broker), given back
    by every worker's sweep (every 10 s). kombu's own sweep of its unacknowledged set (only
    ``basic_get`` fills it) runs every interval × throttle seconds (100 s by default), which a
    short timeout (in tests) shortens to match.

    The service's bookkeeping keys are its own (``broker_keys``), so that its Redis user can be
    kept off every other service's; one list per queue (``priority_steps``), which Flower reads
    from here to know which lists a queue has."""
    options: dict[str, Any] = {
        "visibility_timeout": visibility_timeout_s,
        "processing_lease": visibility_timeout_s,
        "priority_steps": [0],
        **broker_keys(service),
    }
    if visibility_timeout_s < 60:
        options |= {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
    return options


def make_celery_app(service: str) -> Celery:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{service}.settings")
    app = Celery(service, events="common.messaging.events:ServiceEvents")
    broker_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    app.conf.update(
        broker_url=broker_url,
        broker_transport="common.messaging.broker:Transport",
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_default_queue=service,
        task_create_missing_queues=True,
        task_acks_late=True,
        # Only a prefork pool can lose a child and requeue its message at once; kept for anyone
        # who runs one (``--pool prefork``). The solo pool below dies whole: its message comes
        # back after the visibility timeout, a saga's command sooner through the deadline sweep.
        task_reject_on_worker_lost=True,
        # Each worker runs its tasks in its own process, one at a time, and scales by running
        # more workers. A prefork pool hands every message from the main process to a child and
        # back through pipes: a third of the CPU a message cost in the saga benchmark.
        worker_pool="solo",
        # A task that fails is not counted as done. (On Redis, Celery's reject without requeue
        # drops the message just as an ack would, so ``inbox.consume`` lets nothing escape: every
        # envelope is handled, parked or given back; see common.inbox.tasks.)
        task_acks_on_failure_or_timeout=False,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(
            service, int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", VISIBILITY_TIMEOUT_S))
        ),
        # Messages that Celery itself cannot take (undecodable, pickle, unknown task) are
        # dead-lettered by this consumer instead of being dropped with a log line.
        worker_consumer="common.inbox.consumer:DeadLetteringConsumer",
        imports=("common.inbox.tasks",),
        worker_send_task_events=True,
        # No remote control: a worker obeys no broadcast (shutdown, pool changes, rate limits,
        # revokes) from whoever can reach Redis. Flower still shows tasks, from their events.
        worker_enable_remote_control=False,
        task_send_sent_event=False,
        timezone="UTC",
        enable_utc=True,
    )
    # Celery's Django fix-up closes the database connection around every task unless this is
    # set (an old-style key it still reads): a new PostgreSQL backend per message otherwise.
    app.conf["CELERY_DB_REUSE_MAX"] = 10_000
    return app


HOUSEKEEPING_EVERY_S = 600.0


def housekeeping_schedule() -> dict[str, dict[str, Any]]:
    """Beat entries that prune each service's outbox, inbox and idempotency keys on its own queue.

    Each is only pushed onto the queue, as the relay pushes messages, without declaring it
    first (``declare``: none): that would read the queue's length and write its binding tables,
    which the orchestrator's Redis user may not do on another service's queue."""
    return {
        f"prune-{service}": {
            "task": "housekeeping.prune",
            "schedule": HOUSEKEEPING_EVERY_S,
            "options": {"queue": service, "declare": [], "expires": HOUSEKEEPING_EVERY_S},
        }
        for service in SERVICES
    }


@worker_init.connect
def _load_message_keys(**_: object) -> None:
    """Refuse to start without this service's message keys, rather than fail on each message."""
    from common.messaging.keys import key_ring

    key_ring()


@task_prerun.connect
def _drop_broken_database_connections(**_: object) -> None:
    """Before each task, close a database connection that failed and no longer answers, or
    that outlived CONN_MAX_AGE, so the task connects afresh. Celery's Django fix-up would do
    this only every CELERY_DB_REUSE_MAX tasks (set above so as not to reconnect per message):
    after a PostgreSQL restart every task failed on the dead connection until then.

    Only a connection that had an error or is too old is handed to Django's
    ``close_if_unusable_or_obsolete``: that call also marks the connection for a fresh health
    check (CONN_HEALTH_CHECKS), a ``SELECT 1`` round trip before the task's first query, which
    on every message cost one query per message (6 % of a worker's time in a profile)."""
    from django.db import connections

    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if (
            conn.errors_occurred
            or (conn.close_at is not None and now >= conn.close_at)
            or conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"]
        ):
            conn.close_if_unusable_or_obsolete()


@worker_init.connect
def _start_tracing(sender: Any = None, **_: object) -> None:
    """The solo pool runs tasks in this process: trace here. A prefork pool's children trace
    from their own start (an exporter thread does not survive a fork)."""
    from common import tracing

    pool = getattr(sender, "pool_cls", None)
    if getattr(pool, "__module__", "") != "celery.concurrency.prefork":
        tracing.start("worker")


@worker_process_init.connect
def _start_tracing_in_child(**_: object) -> None:
    from common import tracing

    tracing.start("worker")


@worker_ready.connect
def _worker_ready(**_: object) -> None:
    mark_ready()


def mark_ready() -> None:
    """Let a supervisor see that this process consumes now (``make up`` waits for it)."""
    marker = os.environ.get("READY_FILE")
    if marker:
        Path(marker).parent.mkdir(parents=True, exist_ok=True)
        Path(marker).touch()


class QuietRoutineTasks(logging.Filter):
    """Drops the worker's "received"/"succeeded" lines and beat's "Sending due task" line of
    routine periodic tasks (the saga sweep runs every second), unless a run returned something
    other than 0: a sweep that moved sagas is still logged, as is every failure."""

    def __init__(self, tasks: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        data = getattr(record, "data", None)
        if isinstance(data, dict):  # the worker's lines carry the task's name and outcome
            name, returned = data.get("name"), data.get("return_value", "0")
            return name not in self.tasks or returned not in {"0", "None"}
        args = record.args if isinstance(record.args, tuple) else ()
        return not (record.name == "celery.beat" and args[-1:] and args[-1] in self.tasks)
