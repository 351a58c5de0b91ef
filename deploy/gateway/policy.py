"""What the edge does besides routing, stated once so that Envoy and Nginx do the same.

Both renderers translate these values into their own terms; neither invents its own numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from urllib.parse import urlsplit

from common.tracing import config as tracing_config

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
# The only X-Request-Id a client may choose (as the services accept it, common.api.request_id);
# the gateways replace any other with one of their own.
REQUEST_ID_PATTERN = r"[A-Za-z0-9._-]{8,64}"


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
        rps, burst = _bucket_from_env(environ, "GATEWAY_RATE_LIMIT", cls.rps, cls.burst)
        return cls(rps=rps, burst=burst)


def _bucket_from_env(
    environ: Mapping[str, str], prefix: str, rps: int, burst: int
) -> tuple[int, int]:
    rps = int(environ.get(f"{prefix}_RPS", rps))
    burst = int(environ.get(f"{prefix}_BURST", burst))
    if rps < 1 or burst < 1:
        raise ValueError(f"{prefix}_RPS and _BURST must be positive: {rps}, {burst}")
    return rps, burst


class Key(StrEnum):
    """Who a per-caller bucket belongs to."""

    # The verified subject (Envoy: the claim jwt_authn put in SUBJECT_HEADER; Nginx: the
    # subject the verification endpoint answered).
    SUBJECT = "subject"
    # The client address, an IPv6 address masked to its /64: one host usually has a whole /64,
    # so a bucket per full IPv6 address would be no limit at all.
    ADDRESS = "address"
    # The subject when the call is authenticated, the masked address otherwise.
    CALLER = "caller"


@dataclass(frozen=True)
class CallerLimit:
    """A token bucket per caller for one kind of request (``method`` on exactly ``path``, or
    every request when ``path`` is None): ``burst`` tokens refilled at ``rps`` per second.

    Every bucket a request falls in is charged; the first that is empty refuses it with 429.
    """

    name: str
    key: Key
    rps: int
    burst: int
    method: str | None = None
    path: str | None = None

    @property
    def env_prefix(self) -> str:
        return f"GATEWAY_RATE_LIMIT_{self.name.upper()}"


# Sized against `make bench-saga`: the whole system sustains about 55 checkouts/s on the
# development machine (README), and a checkout is a saga of four commands and their replies.
CALLER_LIMITS: tuple[CallerLimit, ...] = (
    # Any call. As generous as the per-address bucket (one client polling on one keep-alive
    # connection makes 450 to 950 requests/s, and bench-saga polls like that), but one per
    # subject however many addresses it comes from, and one per IPv6 /64 for anonymous calls.
    CallerLimit("caller", Key.CALLER, rps=1000, burst=2000),
    # A checkout starts a saga: 10/s is under a fifth of the system's 55/s, so a single
    # customer cannot take it all, and still far more than a person ordering (a burst of 20
    # covers a client retrying a batch).
    CallerLimit("checkout", Key.SUBJECT, rps=10, burst=20, method="POST", path="/api/v1/checkouts"),
    # A cancellation is a saga too, and only ever follows an order: half the checkout rate.
    CallerLimit(
        "cancellation",
        Key.SUBJECT,
        rps=5,
        burst=10,
        method="POST",
        path="/api/v1/cancellations",
    ),
    # Sign-up and login hash a password (Argon2id: about 25 ms of CPU each), so they are
    # the cheapest way to load the customer service. Per address, since the caller is not
    # known yet; a burst of 30 lets an office behind one NAT address start its day.
    CallerLimit("signup", Key.ADDRESS, rps=5, burst=30, method="POST", path="/api/v1/customers"),
    CallerLimit("login", Key.ADDRESS, rps=5, burst=30, method="POST", path="/api/v1/tokens"),
)


def caller_limits(environ: Mapping[str, str] = os.environ) -> tuple[CallerLimit, ...]:
    """CALLER_LIMITS with each bucket overridable: GATEWAY_RATE_LIMIT_<NAME>_RPS / _BURST."""
    limits = []
    for limit in CALLER_LIMITS:
        rps, burst = _bucket_from_env(environ, limit.env_prefix, limit.rps, limit.burst)
        limits.append(replace(limit, rps=rps, burst=burst))
    return tuple(limits)


# The verified caller, as the services receive it. The gateway removes both from every client
# request before it verifies anything, so only the gateway can set them.
SUBJECT_HEADER = "x-auth-subject"
SCOPE_HEADER = "x-auth-scope"
AUTH_HEADERS = (SUBJECT_HEADER, SCOPE_HEADER)


@dataclass(frozen=True)
class Anonymous:
    """A call that needs no token (DESIGN.md §7): ``methods`` on exactly ``path``."""

    methods: tuple[str, ...]
    path: str


# Calls under /api/ that pass without a token; whatever Authorization they carry is passed on
# (the services ignore it there). Everything else under a route of the table below /api/
# needs a valid token. The /<service>/ and /flower/ prefixes are not checked at the gateway:
# health, schema, Swagger UI and the JWKS are public, the operator pages (on the operator
# listener only) have their own login.
ANONYMOUS: tuple[Anonymous, ...] = (
    Anonymous(("GET", "HEAD"), "/api/v1/menu"),
    Anonymous(("POST",), "/api/v1/customers"),
    Anonymous(("POST",), "/api/v1/tokens"),
)
PROTECTED_PREFIX = "/api/"
JWKS_PATH = "/customer/.well-known/jwks.json"
# The customer service's endpoint that Nginx asks (auth_request) whether a token is valid.
VERIFY_PATH = "/customer/auth/verify"
# Tolerated clock difference between the token's issuer and the gateway, for exp/nbf/iat.
CLOCK_SKEW_S = 5


@dataclass(frozen=True)
class Identity:
    """Whose tokens the gateway accepts: one issuer, one audience, its public keys (JWKS).

    ``jwks_url`` None means the bundled provider's JWKS, fetched from the customer upstream at
    JWKS_PATH. Envoy keeps the keys ``jwks_cache_s`` seconds: a key newly published by the
    issuer must be in the JWKS that long before tokens are signed with it.
    """

    issuer: str = "http://127.0.0.1:8000/customer"
    audience: str = "cafe"
    jwks_url: str | None = None
    jwks_cache_s: int = 60

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Identity:
        identity = cls(
            issuer=environ.get("OIDC_ISSUER") or cls.issuer,
            audience=environ.get("OIDC_AUDIENCE") or cls.audience,
            jwks_url=environ.get("OIDC_JWKS_URL") or None,
            jwks_cache_s=int(environ.get("GATEWAY_JWKS_CACHE_S", cls.jwks_cache_s)),
        )
        if identity.jwks_cache_s < 1:
            raise ValueError(f"GATEWAY_JWKS_CACHE_S must be positive: {identity.jwks_cache_s}")
        return identity


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
NOT_AUTHENTICATED = Problem(
    401,
    "Unauthorized",
    "not_authenticated",
    "A valid bearer token is required: missing, malformed, expired or wrongly signed.",
)
FORBIDDEN = Problem(403, "Forbidden", "forbidden", "The gateway refused this request.")
# RFC 6750: the scheme a client must use. Envoy's jwt_authn sends its own (with a realm, and
# error="invalid_token" for a bad token); this is the value wherever the gateway has to add it.
WWW_AUTHENTICATE = 'Bearer realm="cafe"'
# A refused request may be retried once a token has been added back to its bucket; every
# bucket refills at least once a second.
RETRY_AFTER_S = 1
# Errors the gateway itself produces; an upstream's own error responses pass through untouched.
GATEWAY_PROBLEMS: tuple[Problem, ...] = (
    NOT_AUTHENTICATED,
    FORBIDDEN,
    Problem(
        413,
        "Payload Too Large",
        "payload_too_large",
        f"The request body is larger than {MAX_BODY_BYTES} bytes.",
    ),
    Problem(
        429, "Too Many Requests", "rate_limited", "Too many requests from this caller; slow down."
    ),
    Problem(502, "Bad Gateway", "bad_gateway", "The upstream service could not be reached."),
    Problem(
        503, "Service Unavailable", "service_unavailable", "The upstream service is unavailable."
    ),
    Problem(
        504, "Gateway Timeout", "gateway_timeout", "The upstream service did not answer in time."
    ),
)


@dataclass(frozen=True)
class Tracing:
    """Where the gateway sends its spans (OTLP/HTTP) and how many new traces it starts: the
    same standard ``OTEL_*`` settings the services read (``common.tracing.config``)."""

    url: str  # the OTLP/HTTP traces endpoint, …/v1/traces
    sampling_percent: float = 100.0
    service_name: str = "gateway"

    @property
    def host_port(self) -> tuple[str, int]:
        parsed = urlsplit(self.url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"the gateway exports spans over plain http, not {self.url!r}")
        return parsed.hostname, parsed.port or 80

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Tracing | None:
        """None when tracing is off (no endpoint, or the SDK disabled)."""
        if not tracing_config.wanted(environ):
            return None
        tracing_config.check_protocol(environ)
        return cls(
            url=tracing_config.traces_url(environ),
            sampling_percent=tracing_config.sampling_percent(environ),
        )
