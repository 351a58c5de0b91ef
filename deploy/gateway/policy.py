"""What the edge does besides routing, stated once so that Envoy and Nginx do the same.

Both renderers translate these values into their own terms; neither invents its own numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

# Django refuses larger bodies too (DATA_UPLOAD_MAX_MEMORY_SIZE); the gateway says so before
# the body ever reaches a web worker.
MAX_BODY_BYTES = 1024 * 1024

CONNECT_TIMEOUT_S = 1.0
# Below gunicorn's 2 s keep-alive, so the gateway never reuses a connection gunicorn is closing
# (a POST without an Idempotency-Key lost that way could not be retried).
UPSTREAM_IDLE_TIMEOUT_S = 1.0
# An idempotent request is tried at most 1 + RETRIES times, never past its route's timeout.
RETRIES = 2
# Passive health: after this many consecutive gateway failures (connect errors, 502/503/504) an
# upstream address is taken out of rotation for EJECT_FOR_S.
EJECT_AFTER_FAILURES = 3
EJECT_FOR_S = 10

IDEMPOTENCY_KEY_HEADER = "idempotency-key"


@dataclass(frozen=True)
class RateLimit:
    """Per client address: a token bucket of ``burst`` tokens refilled at ``rps`` per second.

    Only a runaway client is meant to be refused. One client polling in a loop on one
    keep-alive connection already makes 450 (menu) to 950 (a 404) requests/s on a developer
    machine, and bench-saga polls like that; so the defaults sit above that rather than at a
    rate a person would click.
    """

    rps: int = 1000
    burst: int = 2000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RateLimit:
        limit = cls(
            rps=int(environ.get("GATEWAY_RATE_LIMIT_RPS", cls.rps)),
            burst=int(environ.get("GATEWAY_RATE_LIMIT_BURST", cls.burst)),
        )
        if limit.rps < 1 or limit.burst < 1:
            raise ValueError(f"GATEWAY_RATE_LIMIT_RPS and _BURST must be positive: {limit}")
        return limit


@dataclass(frozen=True)
class Problem:
    status: int
    title: str
    code: str
    detail: str

    def body(self) -> str:
        """RFC 9457 problem+json, shaped like the services' own errors (common.api.errors)."""
        return json.dumps(
            {
                "type": "about:blank",
                "title": self.title,
                "status": self.status,
                "detail": self.detail,
                "code": self.code,
            },
            separators=(",", ":"),
        )


PROBLEM_CONTENT_TYPE = "application/problem+json"

NOT_FOUND = Problem(404, "Not Found", "not_found", "No route.")
# Errors the gateway itself produces; an upstream's own error responses pass through untouched.
GATEWAY_PROBLEMS: tuple[Problem, ...] = (
    Problem(
        413,
        "Payload Too Large",
        "payload_too_large",
        f"The request body is larger than {MAX_BODY_BYTES} bytes.",
    ),
    Problem(
        429, "Too Many Requests", "rate_limited", "Too many requests from this address; slow down."
    ),
    Problem(502, "Bad Gateway", "bad_gateway", "The upstream service could not be reached."),
    Problem(
        503, "Service Unavailable", "service_unavailable", "The upstream service is unavailable."
    ),
    Problem(
        504, "Gateway Timeout", "gateway_timeout", "The upstream service did not answer in time."
    ),
)
