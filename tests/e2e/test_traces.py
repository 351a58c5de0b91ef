"""One checkout is one trace: from the gateway's span, through every service's request,
outbox rows, relays and handlers, to the saga's last transition (spans collected by the
stack's OTLP receiver, ``otlp``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.cafe import Cafe
from tests.tracing.otlp import Receiver, Span

pytestmark = pytest.mark.e2e

PLACE_ORDER = ("order.create_pending", "customer.verify", "account.debit", "order.approve")
SERVICES = {"gateway", "customer", "account", "order", "orchestrator"}
CONSUMER, PRODUCER = 5, 4  # opentelemetry.proto.trace.v1.Span.SpanKind


def _completed(saga_id: str) -> Callable[[list[Span]], bool]:
    """The saga's completion has arrived, and so has the consumer span of every command and
    reply in its trace: each process exports its own batches (every 5 s), so the orchestrator's
    last transition can come in before a participant's handler span."""

    def found(spans: list[Span]) -> bool:
        ends = [
            s.trace_id
            for s in spans
            if s.name == "saga transition"
            and s.attributes.get("cafe.saga.id") == saga_id
            and s.attributes.get("cafe.saga.state") == "completed"
        ]
        if not ends:
            return False
        consumed = {
            s.attributes.get("cafe.message.type")
            for s in spans
            if s.trace_id == ends[0] and s.kind == CONSUMER
        }
        return all(c in consumed and f"{c}.reply" in consumed for c in PLACE_ORDER)

    return found


def _ancestry(span: Span, by_id: dict[str, Span]) -> list[Span]:
    """The span and its parents up to the root (stops at a parent that never arrived)."""
    chain = [span]
    while chain[-1].parent_id and chain[-1].parent_id in by_id:
        chain.append(by_id[chain[-1].parent_id])
    return chain


def test_a_checkout_is_one_trace_from_the_gateway_to_the_last_reply(
    gateway: httpx.Client, otlp: Receiver
) -> None:
    # Given a customer with money, when they check out and the saga completes
    cafe = Cafe(gateway)
    customer = cafe.customer(deposit=10_000)
    # (a test before may have left the system behind: a refusal started nothing, so retry)
    started = None
    deadline = time.monotonic() + 60
    while started is None and time.monotonic() < deadline:
        started = cafe.checkout_unless_shed(customer, [{"menu_item_id": 1, "quantity": 1}])
        if started is None:
            time.sleep(1)
    assert started is not None, "shed for a minute"
    done = cafe.wait(started)
    assert done["state"] == "completed"
    saga_id = done["id"]

    # then its spans reach the collector,
    spans = otlp.wait_for(_completed(saga_id))
    last = [
        s
        for s in spans
        if s.name == "saga transition"
        and s.attributes.get("cafe.saga.state") == "completed"
        and s.attributes.get("cafe.saga.id") == saga_id
    ]
    assert len(last) == 1, "no span of the saga's completion"
    trace_id = last[0].trace_id
    # all in one trace: every span that names the saga, and every message it sent,
    saga_spans = [s for s in spans if s.attributes.get("cafe.saga.id") == saga_id]
    assert {s.trace_id for s in saga_spans} == {trace_id}
    trace = [s for s in spans if s.trace_id == trace_id]
    consumed = [s.attributes["cafe.message.type"] for s in trace if s.kind == CONSUMER]
    for command in PLACE_ORDER:
        assert command in consumed, f"no consumer span of {command}"
        assert f"{command}.reply" in consumed, f"no consumer span of {command}'s reply"

    # a tree: from the completion, parent by parent, up to the gateway's span, the root,
    by_id = {s.span_id: s for s in trace}
    otlp.wait_for(lambda got: not _ancestry(last[0], {s.span_id: s for s in got})[-1].parent_id)
    by_id = {s.span_id: s for s in otlp.spans if s.trace_id == trace_id}
    chain = _ancestry(last[0], by_id)
    root = chain[-1]
    assert root.parent_id == "", f"the chain stops at {root.name} of {root.service}"
    assert root.service == "gateway"
    assert [s for s in by_id.values() if not s.parent_id] == [root]
    # through every service, with each reply and command in turn on the path,
    assert {s.service for s in chain} == SERVICES
    path = [s.attributes["cafe.message.type"] for s in reversed(chain) if s.kind == CONSUMER]
    assert path == [m for command in PLACE_ORDER for m in (command, f"{command}.reply")]
    # each message written in a producer span of its sender (the outbox row's insert),
    for span in chain:
        if span.kind == CONSUMER:
            assert by_id[span.parent_id].kind == PRODUCER
            assert by_id[span.parent_id].service == span.attributes["cafe.message.source"]
    # the web request and its database work inside it,
    request = next(s for s in chain if s.service == "orchestrator" and s.kind == 2)
    assert any(s.parent_id == request.span_id or s.attributes.get("db.system") for s in trace)
    assert any(s.attributes.get("db.system", s.attributes.get("db.system.name")) for s in trace)
    # and each row's relay batch, a trace of its own, linked to the row's producer span.
    producers = {s.span_id for s in chain if s.kind == PRODUCER}
    relays = otlp.wait_for(
        lambda got: (
            producers <= {link[1] for s in got if s.name == "outbox publish" for link in s.links}
        )
    )
    linked = {link[1] for s in relays if s.name == "outbox publish" for link in s.links}
    assert producers <= linked
