"""Tracing's cost per message, off and on (issue 12's budget: on costs at most 10 % of
``make bench-saga``'s throughput; off, nothing measurable).

    .venv/bin/python -m tests.bench.tracing

Times, with CPU time (time.process_time, so the exporter's thread counts too), in one process
and the real code: one message's trip without the database — the outbox's signing of it for
its queue (with the trace context of its insert), the relay's publish span, the receiver's
decode and signature check, the consumer's span — with tracing off, then on (the SDK with its
BatchSpanProcessor and OTLP/HTTP exporter, sending to a receiver in another process); and one
database query's span. Prints JSON last.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from deploy.local.layout import reachable

ROOT = Path(__file__).resolve().parents[2]
RECEIVER = "import time; from tests.tracing.otlp import receiving\nwith receiving({port}):\n    time.sleep(3600)"


def cpu_us(
    fn: Callable[[], object], number: int, after: Callable[[], object] = lambda: None
) -> float:
    start = time.process_time()
    for _ in range(number):
        fn()
    after()
    return round((time.process_time() - start) / number * 1e6, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "account.settings")
    os.environ.setdefault("CAFE_ENV", "development")
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[name]
    import django

    django.setup()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from common import tracing
    from common.messaging.envelope import decode
    from common.messaging.signing import KeyRing, SigningKey
    from common.outbox.services import _signed_rows
    from common.tests.support import debit_command

    private = Ed25519PrivateKey.generate()
    ring = KeyRing(
        signer=SigningKey(service="orchestrator", kid="k1", private=private),
        public={"orchestrator": {"k1": private.public_key()}},
    )
    command = debit_command(uuid.uuid4(), 300)

    def one_message() -> None:
        with tracing.outgoing([command.type]) as trace:
            row = _signed_rows(command, None, ring, trace)[0]
        document = row["envelope"]
        assert isinstance(document, dict)
        traced = tracing.relaying([document["headers"].get("traceparent")])
        with traced if tracing.ACTIVE else nullcontext():
            raw = json.dumps(document)
        envelope, _ = decode(raw, receiver="account", keys=ring)
        with tracing.consuming(envelope):
            pass

    number = 4000
    one_message()
    off = cpu_us(one_message, number)
    off_check = cpu_us(lambda: tracing.consuming(command), 100_000)

    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER.format(port=port)], cwd=ROOT, env={**os.environ}
    )
    try:
        deadline = time.monotonic() + 60
        while not reachable("127.0.0.1", port):
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.2)
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
        tracing.start("bench")
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush")  # noqa: B009 — the SDK's provider has it
        one_message()
        flush()
        on = cpu_us(one_message, number, flush)
        tracer = trace.get_tracer("bench")

        def query_span() -> None:
            with tracer.start_as_current_span("SELECT", kind=trace.SpanKind.CLIENT):
                pass

        with tracer.start_as_current_span("request", kind=trace.SpanKind.SERVER):
            db_span = cpu_us(query_span, number, flush)
        getattr(provider, "shutdown")()  # noqa: B009 — while the receiver still listens
    finally:
        receiver.terminate()
        receiver.wait()
    print(
        json.dumps(
            {
                "message_off_us": off,
                "message_on_us": on,
                "tracing_on_added_per_message_us": round(on - off, 1),
                "tracing_off_check_us": off_check,
                "db_query_span_us": db_span,
            }
        )
    )


if __name__ == "__main__":
    main()
