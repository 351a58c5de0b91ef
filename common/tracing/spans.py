"""The spans this project makes itself, around the outbox, the relay, the consumer and the
saga. Imported only when tracing is on (``common.tracing``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from common.messaging.envelope import Envelope

_tracer = trace.get_tracer("cafe")
_w3c = TraceContextTextMapPropagator()


def unless_kept(span: trace.Span) -> AbstractContextManager[None]:
    """The work inside a span that is not kept (its trace was not sampled) runs with the
    libraries' instrumentation suppressed, the switch every OpenTelemetry instrumentation
    checks first: psycopg's span per query is then not even started, where otherwise it is
    made, asked of the sampler and dropped, on every query of every unsampled message. The
    trace context still travels (our own spans are not instrumentation), so what follows stays
    in the same unsampled trace."""
    return nullcontext() if span.is_recording() else suppress_instrumentation()


def _in_unsampled_trace() -> bool:
    """A trace is current and was not sampled: a span started now would be dropped (the
    sampler follows its parent), so starting one is work for nothing."""
    context = trace.get_current_span().get_span_context()
    return context.is_valid and not context.trace_flags.sampled


@contextmanager
def producing(types: list[str]) -> Iterator[Mapping[str, str]]:
    # In an unsampled trace the rows carry the current context on (what follows stays in it).
    with nullcontext() if _in_unsampled_trace() else _producer_span(types):
        carrier: dict[str, str] = {}
        _w3c.inject(carrier)
        yield carrier


def _producer_span(types: list[str]) -> AbstractContextManager[trace.Span]:
    name = f"{types[0]} create" if len(set(types)) == 1 else "outbox create"
    return _tracer.start_as_current_span(
        name,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.operation.type": "create",
            "messaging.batch.message_count": len(types),
        },
    )


@contextmanager
def consuming(envelope: Envelope) -> Iterator[None]:
    parent = _w3c.extract(envelope.headers)
    attributes = {
        "messaging.system": "celery",
        "messaging.operation.type": "process",
        "messaging.destination.name": envelope.destination or "",
        "messaging.message.id": str(envelope.id),
        "cafe.message.type": envelope.type,
        "cafe.message.source": envelope.source,
    }
    if envelope.correlation.saga_id is not None:
        attributes["cafe.saga.id"] = str(envelope.correlation.saga_id)
    with (
        _tracer.start_as_current_span(
            f"{envelope.type} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span,
        unless_kept(span),
    ):
        yield


@contextmanager
def relaying(traceparents: Iterable[str | None]) -> Iterator[None]:
    rows = list(traceparents)
    # A batch is its own trace (it serves many), linked to each message's. The links are made
    # only for a batch that is kept: reading every row's context costs more than the span.
    with (
        _tracer.start_as_current_span(
            "outbox publish",
            context=trace.set_span_in_context(trace.INVALID_SPAN),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.operation.type": "send",
                "messaging.batch.message_count": len(rows),
            },
        ) as span,
        unless_kept(span),
    ):
        if span.is_recording():
            _link(span, rows)
        yield


def _link(span: trace.Span, traceparents: list[str | None]) -> None:
    for traceparent in filter(None, traceparents):
        linked = trace.get_current_span(_w3c.extract({"traceparent": traceparent}))
        if linked.get_span_context().is_valid:
            span.add_link(linked.get_span_context())


def untraced() -> AbstractContextManager[None]:
    """Work that is no part of any trace, with the instrumentation switched off."""
    return suppress_instrumentation()


@contextmanager
def internal(name: str, attributes: Mapping[str, str]) -> Iterator[None]:
    if _in_unsampled_trace():
        yield
        return
    with _tracer.start_as_current_span(name, attributes=dict(attributes)):
        yield
