"""Tracing: off by default and then free; on, the trace context an outbox row carries is the
one current at its insert, inside the signed envelope, and the consumer continues it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from django.db import transaction
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common import tracing
from common.messaging.envelope import Envelope, InvalidMessage, decode
from common.outbox.models import OutboxMessage
from common.outbox.services import outbox_put
from common.tests.support import debit_command, keys_of
from common.tracing import config, sdk
from common.tracing.sdk import EntryPointsOnly

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        (ENDPOINT, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_only_with_an_endpoint_and_not_disabled(
    env: dict[str, str], on: bool
) -> None:
    assert config.wanted(env) is on


def test_the_standard_endpoint_sampler_and_protocol_settings() -> None:
    assert config.traces_url(ENDPOINT) == "http://collector:4318/v1/traces"
    assert config.sampling_percent({}) == 100.0
    assert config.sampling_percent({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}) == 0.0
    ratio = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    assert config.sampling_percent(ratio) == 25.0
    config.check_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    with pytest.raises(ValueError, match="only http/protobuf"):
        config.check_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


OFF_PROBE = """
import os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "account.settings")
django.setup()
import common.inbox.tasks, common.outbox.relay, common.outbox.services, common.messaging.celery
from common import tracing
tracing.instrument()
tracing.start("worker")
heavy = ("opentelemetry.sdk.trace", "opentelemetry.exporter",
         "opentelemetry.instrumentation", "common.tracing.sdk", "common.tracing.spans")
print(tracing.ACTIVE, sorted(m for m in sys.modules if m.startswith(heavy)))
"""


def test_tracing_off_loads_no_tracing_sdk_exporter_or_instrumentation() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and k != "DJANGO_SETTINGS_MODULE"
    }
    probe = subprocess.run(
        [sys.executable, "-c", OFF_PROBE], capture_output=True, text=True, env=env
    )
    assert probe.stdout.strip() == "False []", probe.stderr


def _written(envelope: Envelope) -> dict[str, object]:
    envelope_json: dict[str, object] = (
        OutboxMessage.objects.filter(message_id=envelope.id).values_list("envelope", flat=True)
    ).get()
    return envelope_json


@pytest.mark.django_db
def test_tracing_off_adds_nothing_to_an_envelope() -> None:
    assert not tracing.ACTIVE
    command = debit_command(uuid.uuid4(), 100)
    with transaction.atomic():
        outbox_put(command, keys=keys_of("orchestrator"))
    written = _written(command)
    assert written["headers"] == command.headers
    assert set(written) == set(Envelope.model_fields)


_exporter = InMemorySpanExporter()


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, its spans kept in memory (the global provider is set once)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.sampler = EntryPointsOnly(provider.sampler)
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    monkeypatch.setattr(tracing, "ACTIVE", True)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


@pytest.mark.django_db
def test_a_row_carries_the_context_of_its_insert_signed_and_the_consumer_continues_it(
    traced: InMemorySpanExporter,
) -> None:
    # Given a request being served, when it writes a command to the outbox
    command = debit_command(uuid.uuid4(), 100)
    with (
        trace.get_tracer("test").start_as_current_span("request") as request,
        transaction.atomic(),
    ):
        outbox_put(command, keys=keys_of("orchestrator"))
    # then the row carries the context of the insert's producer span, a child of the request,
    written = _written(command)
    headers = written["headers"]
    assert isinstance(headers, dict)
    producer = next(s for s in traced.get_finished_spans() if s.name == "account.debit create")
    assert producer.parent is not None
    assert producer.parent.span_id == request.get_span_context().span_id
    trace_id, span_id = f"{producer.context.trace_id:032x}", f"{producer.context.span_id:016x}"
    assert str(headers["traceparent"]).startswith(f"00-{trace_id}-{span_id}-")
    # which the receiver believes only as signed: a forged one fails the signature,
    forged = {**written, "headers": {**headers, "traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}}
    with pytest.raises(InvalidMessage) as refused:
        decode(json.dumps(forged), receiver="account", keys=keys_of("account"))
    assert refused.value.reason == "forged"
    # and the consumer's span continues the trace, under the producer span.
    received, _ = decode(json.dumps(written), receiver="account", keys=keys_of("account"))
    with tracing.consuming(received):
        pass
    consumer = next(s for s in traced.get_finished_spans() if s.name == "account.debit process")
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert consumer.attributes is not None
    assert consumer.attributes["cafe.message.type"] == "account.debit"


def test_a_query_outside_any_span_starts_no_trace(traced: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("poll", kind=trace.SpanKind.CLIENT) as poll:
        assert not poll.is_recording()
    with (
        tracer.start_as_current_span("request", kind=trace.SpanKind.SERVER),
        tracer.start_as_current_span("query", kind=trace.SpanKind.CLIENT) as query,
    ):
        assert query.is_recording()


UNSAMPLED = trace.NonRecordingSpan(
    trace.SpanContext(
        trace_id=0x5CE0E9A56015FEC5AADFA328AE398115,
        span_id=0xAB54A98CEB1F0AD2,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
    )
)


@pytest.mark.django_db
def test_an_unsampled_messages_work_runs_with_the_instrumentation_switched_off(
    traced: InMemorySpanExporter,
) -> None:
    # Given a command written inside a trace that was not sampled (the gateway kept 1 in 10)
    command = debit_command(uuid.uuid4(), 100)
    with trace.use_span(UNSAMPLED), transaction.atomic():
        outbox_put(command, keys=keys_of("orchestrator"))
    written = _written(command)
    headers = written["headers"]
    assert isinstance(headers, dict)
    # it carries that trace on, unsampled,
    assert str(headers["traceparent"]).startswith(
        f"00-{UNSAMPLED.get_span_context().trace_id:032x}-"
    )
    assert str(headers["traceparent"]).endswith("-00")
    # and its consumer's work runs with instrumentation suppressed (no span per query).
    received, _ = decode(json.dumps(written), receiver="account", keys=keys_of("account"))
    with tracing.consuming(received):
        assert not is_instrumentation_enabled()
    assert is_instrumentation_enabled()
    assert traced.get_finished_spans() == ()


@pytest.mark.django_db
def test_a_sampled_messages_work_keeps_the_instrumentation_on(
    traced: InMemorySpanExporter,
) -> None:
    command = debit_command(uuid.uuid4(), 100)
    with trace.get_tracer("test").start_as_current_span("request"), transaction.atomic():
        outbox_put(command, keys=keys_of("orchestrator"))
    received, _ = decode(json.dumps(_written(command)), receiver="account", keys=keys_of("account"))
    with tracing.consuming(received):
        assert is_instrumentation_enabled()


def test_an_unsampled_request_runs_with_the_instrumentation_switched_off() -> None:
    # Django's instrumentation calls these hooks around a request, its span current.
    request = SimpleNamespace(META={})
    sdk._request_started(UNSAMPLED, request)
    assert not is_instrumentation_enabled()
    sdk._request_ended(UNSAMPLED, request, None)
    assert is_instrumentation_enabled() and request.META == {}
    kept = trace.get_tracer("test", tracer_provider=TracerProvider()).start_span("request")
    sdk._request_started(kept, request)
    assert is_instrumentation_enabled()
    sdk._request_ended(kept, request, None)
    kept.end()


def test_in_an_unsampled_trace_no_span_of_ours_is_started(
    traced: InMemorySpanExporter,
) -> None:
    from common.tracing import spans

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a span was started in an unsampled trace")

    with trace.use_span(UNSAMPLED), pytest.MonkeyPatch.context() as patch:
        patch.setattr(spans._tracer, "start_as_current_span", refuse)
        with tracing.step("saga transition", {"cafe.saga.id": "x"}):
            pass
        with tracing.outgoing(["account.debit"]) as carried:
            assert str(carried["traceparent"]).startswith(
                f"00-{UNSAMPLED.get_span_context().trace_id:032x}-"
            )
    # Outside any trace, the same calls start one (a saga swept by the beat is traced).
    with tracing.outgoing(["account.debit"]):
        pass
    assert [s.name for s in traced.get_finished_spans()] == ["account.debit create"]


def test_a_kept_relay_batch_links_every_row_and_runs_instrumented(
    traced: InMemorySpanExporter,
) -> None:
    rows = [f"00-{'a' * 31}{i}-{'b' * 15}{i}-01" for i in range(3)]
    with tracing.relaying([*rows, None]):
        assert is_instrumentation_enabled()
    (batch,) = traced.get_finished_spans()
    assert batch.name == "outbox publish"
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 4
    assert sorted(f"{link.context.trace_id:032x}" for link in batch.links) == [
        f"{'a' * 31}{i}" for i in range(3)
    ]


def test_a_relay_claim_runs_untraced(traced: InMemorySpanExporter) -> None:
    with tracing.untraced():
        assert not is_instrumentation_enabled()
    assert is_instrumentation_enabled()
