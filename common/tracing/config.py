"""Whether and where to trace, read from the standard ``OTEL_*`` environment only.

Pure code (no OpenTelemetry import), so a process with tracing off pays for nothing but
this check, and the gateway renderers can share the decision.
"""

from __future__ import annotations

from collections.abc import Mapping

SUPPORTED_PROTOCOL = "http/protobuf"


def wanted(env: Mapping[str, str]) -> bool:
    """On when an OTLP endpoint is set, unless the SDK is disabled or the exporter is none."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(traces_url(env))


def traces_url(env: Mapping[str, str]) -> str:
    """Where OTLP/HTTP spans go: the signal's own endpoint as given, else the base one's
    ``/v1/traces`` (the OTLP exporter's own rule)."""
    own = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if own:
        return own
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return f"{base.rstrip('/')}/v1/traces" if base else ""


def check_protocol(env: Mapping[str, str]) -> None:
    """Only OTLP over HTTP with protobuf is installed; say so rather than export nothing."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(name, "").strip()
        if value:
            if value != SUPPORTED_PROTOCOL:
                raise ValueError(f"{name}={value!r}: only {SUPPORTED_PROTOCOL} is supported")
            return


def sampling_percent(env: Mapping[str, str]) -> float:
    """The share of new traces to record, for a tracer (Envoy's) that takes a percentage: the
    ratio of ``OTEL_TRACES_SAMPLER`` (``traceidratio``, ``parentbased_traceidratio``), 0 for
    the ``always_off`` ones, else all."""
    sampler = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if sampler.endswith("always_off"):
        return 0.0
    if sampler.endswith("traceidratio"):
        try:
            ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        except ValueError:
            ratio = 1.0
        return min(max(ratio, 0.0), 1.0) * 100
    return 100.0
