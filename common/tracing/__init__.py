"""Traces (OpenTelemetry): one trace per checkout, across the outbox and the queues.

Off unless the standard ``OTEL_*`` environment names an OTLP endpoint (``config.wanted``).
Off, nothing here imports the SDK: ``ACTIVE`` stays False, and the hot paths (the outbox
insert, the relay, the consumer, a saga transition) check it and do nothing else. On, each
process starts the SDK where its model wants it (``start``: gunicorn's post-fork, the Celery
worker's start, the relay command), after ``instrument`` patched Django and psycopg.

How a trace crosses the bus: the trace context current when an outbox row is *inserted*
goes into the envelope's ``headers`` (``traceparent``, ``tracestate``), inside the signed
part, so a forged trace context fails the signature like any other forged field (and no
business decision ever reads it). The relay's publish span is linked to the rows it sends;
the consumer's span is the child of the context in the envelope, so the saga is one tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from common.tracing import config

if TYPE_CHECKING:
    from common.messaging.envelope import Envelope

# True once this process exports spans. Read as ``tracing.ACTIVE`` (never imported by name).
ACTIVE = False
_instrumented = False
_NOTHING: AbstractContextManager[None] = nullcontext()


def instrument() -> None:
    """Patch Django (its middleware list, so before the WSGI handler loads it) and psycopg.
    Safe before a fork: no thread, no exporter; spans start flowing once ``start`` ran."""
    global _instrumented
    if _instrumented or not config.wanted(os.environ):
        return
    from common.tracing import sdk

    sdk.instrument_libraries()
    _instrumented = True


def start(process: str) -> None:
    """Export this process's spans (``process``: web, worker, relay), if tracing is wanted.
    Call it in the process that will do the work: after a fork, never before."""
    global ACTIVE
    if ACTIVE or not config.wanted(os.environ):
        return
    config.check_protocol(os.environ)
    instrument()
    from common.tracing import sdk

    sdk.install(process)
    ACTIVE = True


def outgoing(types: Iterable[str]) -> AbstractContextManager[Mapping[str, str]]:
    """The outbox write's span, yielding the trace context its rows carry ({} when off)."""
    if not ACTIVE:
        return nullcontext({})
    from common.tracing import spans

    return spans.producing(list(types))


def consuming(envelope: Envelope) -> AbstractContextManager[Any]:
    """The handler's span, a child of the context the envelope carries."""
    if not ACTIVE:
        return _NOTHING
    from common.tracing import spans

    return spans.consuming(envelope)


def relaying(traceparents: Iterable[str | None]) -> AbstractContextManager[Any]:
    """The relay's publish span, linked to the traces of the rows it sends."""
    if not ACTIVE:
        return _NOTHING
    from common.tracing import spans

    return spans.relaying(traceparents)


def untraced() -> AbstractContextManager[Any]:
    """Work no trace follows (a relay's claim, outside any batch's span): the libraries'
    instrumentation is switched off, so its queries start no span only to drop it."""
    if not ACTIVE:
        return _NOTHING
    from common.tracing import spans

    return spans.untraced()


def step(name: str, attributes: Mapping[str, str]) -> AbstractContextManager[Any]:
    """A span of our own inside the current one (a saga transition)."""
    if not ACTIVE:
        return _NOTHING
    from common.tracing import spans

    return spans.internal(name, attributes)
