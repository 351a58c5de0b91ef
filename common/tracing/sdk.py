"""The OpenTelemetry SDK, set up from the standard ``OTEL_*`` environment. Imported only when
tracing is on (``common.tracing``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from common.tracing.spans import untraced

# Probes, scrapes and the gateway's JWKS refreshes are not requests anyone follows
# (OTEL_PYTHON_DJANGO_EXCLUDED_URLS wins).
EXCLUDED_URLS = "healthz,readyz,metrics,well-known/jwks.json"


class EntryPointsOnly(Sampler):
    """The configured sampler (``OTEL_TRACES_SAMPLER``), except that a database query with no
    span around it (a relay's poll, the sweep's scan, a beat task) starts no trace of its own:
    traces begin where work does, at a request, a message or a relay batch."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind is SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"EntryPointsOnly{{{self.delegate.get_description()}}}"


# Where a request keeps the instrumentation switch it turned off, until its response.
_UNKEPT = "cafe.tracing.unkept"


def _request_started(span: trace.Span, request: Any) -> None:
    """An unsampled request's queries start no span (why: ``spans.unless_kept``). Django's
    instrumentation calls this once the request's span is current, and ``_request_ended``
    before it lets go of it, so the switch is undone in the order it was made."""
    if span.is_recording():
        return
    unkept = untraced()
    unkept.__enter__()
    request.META[_UNKEPT] = unkept


def _request_ended(span: trace.Span, request: Any, response: Any) -> None:
    unkept = request.META.pop(_UNKEPT, None)
    if unkept is not None:
        unkept.__exit__(None, None, None)


def instrument_libraries() -> None:
    DjangoInstrumentor().instrument(
        excluded_urls=os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", EXCLUDED_URLS),
        request_hook=_request_started,
        response_hook=_request_ended,
    )
    PsycopgInstrumentor().instrument()


def install(process: str) -> None:
    from django.conf import settings

    service = os.environ.get("OTEL_SERVICE_NAME") or str(settings.SERVICE_NAME)
    resource = Resource.create({"service.name": service, "cafe.process": process})
    provider = TracerProvider(resource=resource)  # its sampler from OTEL_TRACES_SAMPLER(_ARG)
    provider.sampler = EntryPointsOnly(provider.sampler)
    # Spans leave in batches from a thread of their own (OTEL_BSP_* tune it); the exporter
    # reads OTEL_EXPORTER_OTLP_* itself.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
