"""Envoy's access filters: who the caller is (jwt_authn) and how much it may ask (per caller).

The HTTP filter chain runs in this order:

1. ``header_mutation`` removes the caller headers a client sent, so only jwt_authn can set them
   (Envoy 1.40's jwt_authn happens to drop them too; this does not rely on it);
2. the per-address bucket (``envoy._rate_limit_filter``), before any token is looked at, so a
   flood of made-up tokens costs no more than any other flood;
3. ``jwt_authn`` verifies the bearer token against the issuer's JWKS (fetched in the
   background and cached) and puts ``sub`` and ``scope`` into the caller headers;
4. the per-caller buckets of ``policy.caller_limits``, keyed on the verified subject.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from deploy.gateway import policy
from deploy.gateway.routes import Route

_TYPES = "type.googleapis.com/envoy.extensions"
PROVIDER = "cafe"
JWKS_CLUSTER = "oidc_jwks"
# Where the Envoy images (envoyproxy/envoy, Debian) keep the system's CA certificates.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
JWKS_FETCH_TIMEOUT_S = 2
# Verified tokens Envoy remembers, per worker thread.
JWT_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Access:
    """What the access filters are rendered from."""

    identity: policy.Identity
    jwks_url: str
    jwks_cluster: str
    caller_limits: tuple[policy.CallerLimit, ...]


def strip_caller_headers() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": f"{_TYPES}.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"remove": h} for h in policy.AUTH_HEADERS]},
        },
    }


def jwks_source(
    identity: policy.Identity, upstreams: Mapping[str, tuple[str, int]]
) -> tuple[str, str, dict[str, Any] | None]:
    """(JWKS URL, the cluster that fetches it, that cluster's definition if it is a new one).

    The bundled provider's JWKS comes from the customer upstream; an external one needs a
    cluster of its own, with TLS for an https URL.
    """
    if identity.jwks_url is None:
        host, port = upstreams["customer"]
        return f"http://{host}:{port}{policy.JWKS_PATH}", "customer", None
    url = urlsplit(identity.jwks_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"OIDC_JWKS_URL must be an http(s) URL: {identity.jwks_url!r}")
    tls = url.scheme == "https"
    port = url.port or (443 if tls else 80)
    cluster: dict[str, Any] = {
        "name": JWKS_CLUSTER,
        "connect_timeout": "2s",
        "type": "STATIC" if url.hostname[0].isdigit() else "LOGICAL_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": JWKS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": url.hostname,
                                        "port_value": port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": f"{_TYPES}.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": url.hostname,
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": CA_BUNDLE},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": url.hostname}}
                        ],
                    }
                },
            },
        }
    return identity.jwks_url, JWKS_CLUSTER, cluster


def _methods(methods: tuple[str, ...]) -> dict[str, Any]:
    return {"name": ":method", "string_match": {"safe_regex": {"regex": "|".join(methods)}}}


def _jwt_rules(routes: list[Route]) -> list[dict[str, Any]]:
    """The anonymous calls first (a valid token is still read; a bad or missing one passes),
    then every API route of the table needs a valid token; other paths are not checked."""
    optional = {
        "requires_any": {
            "requirements": [{"provider_name": PROVIDER}, {"allow_missing_or_failed": {}}]
        }
    }
    anonymous = [
        {"match": {"path": call.path, "headers": [_methods(call.methods)]}, "requires": optional}
        for call in policy.ANONYMOUS
    ]
    protected = [
        {"match": {"prefix": route.prefix}, "requires": {"provider_name": PROVIDER}}
        for route in routes
        if route.prefix.startswith(policy.PROTECTED_PREFIX)
    ]
    return [*anonymous, *protected]


def jwt_filter(access: Access, routes: list[Route]) -> dict[str, Any]:
    """``routes``: those of the table this gateway has (the others answer 404)."""
    identity = access.identity
    provider = {
        "issuer": identity.issuer,
        "audiences": [identity.audience],
        "remote_jwks": {
            "http_uri": {
                "uri": access.jwks_url,
                "cluster": access.jwks_cluster,
                "timeout": f"{JWKS_FETCH_TIMEOUT_S}s",
            },
            "cache_duration": f"{identity.jwks_cache_s}s",
            # Fetched when Envoy starts and again every cache_duration, never while a request
            # waits; a failed fetch (the issuer not up yet) is retried every second.
            "async_fetch": {"failed_refetch_duration": "1s"},
            "retry_policy": {
                "num_retries": 3,
                "retry_back_off": {"base_interval": "0.2s", "max_interval": "1s"},
            },
        },
        # Only the Authorization header (not Envoy's default ?access_token= query parameter,
        # which would end up in access logs).
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        # The services verify the token again (DESIGN.md §7), so it travels on.
        "forward": True,
        "claim_to_headers": [
            {"header_name": policy.SUBJECT_HEADER, "claim_name": "sub"},
            {"header_name": policy.SCOPE_HEADER, "claim_name": "scope"},
        ],
        "clock_skew_seconds": policy.CLOCK_SKEW_S,
        # A token seen before skips the signature check (its exp is still checked each time):
        # a polling client costs one ES256 verification, not one per request.
        "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
    }
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": f"{_TYPES}.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {PROVIDER: provider},
            "rules": _jwt_rules(routes),
        },
    }


def _exact_path(path: str) -> str:
    """A regex for ``:path``: exactly ``path``, with any query string."""
    return f"^{path}(\\?.*)?$"


def _rate_limit(limit: policy.CallerLimit) -> list[list[dict[str, Any]]]:
    """The descriptors (lists of actions) a request in ``limit``'s bucket produces; an action
    that finds nothing (no subject header, another route) drops its whole descriptor."""
    if limit.path is None:
        which: dict[str, Any] = {
            "generic_key": {"descriptor_key": "limit", "descriptor_value": limit.name}
        }
    else:
        which = {
            "header_value_match": {
                "descriptor_key": "limit",
                "descriptor_value": limit.name,
                "headers": [
                    {"name": ":method", "string_match": {"exact": limit.method}},
                    {
                        "name": ":path",
                        "string_match": {"safe_regex": {"regex": _exact_path(limit.path)}},
                    },
                ],
            }
        }
    subject = {
        "request_headers": {"header_name": policy.SUBJECT_HEADER, "descriptor_key": "subject"}
    }
    anonymous = {
        "header_value_match": {
            "descriptor_key": "anonymous",
            "descriptor_value": "yes",
            "expect_match": False,
            "headers": [{"name": policy.SUBJECT_HEADER, "present_match": True}],
        }
    }
    address = {"masked_remote_address": {"v4_prefix_mask_len": 32, "v6_prefix_mask_len": 64}}
    if limit.key == policy.Key.SUBJECT:
        return [[which, subject]]
    if limit.key == policy.Key.ADDRESS:
        return [[which, address]]
    return [[which, subject], [which, anonymous, address]]


def _descriptor_entries(actions: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The configured descriptor that matches what ``actions`` produce; the caller's own part
    (subject, address) is a wildcard, so each caller gets a bucket of its own."""
    entries = []
    for action in actions:
        (kind, spec), *_ = action.items()
        if kind in ("generic_key", "header_value_match"):
            entries.append({"key": spec["descriptor_key"], "value": spec["descriptor_value"]})
        elif kind == "request_headers":
            entries.append({"key": spec["descriptor_key"]})
        else:
            entries.append({"key": kind})
    return entries


def token_bucket(rps: int, burst: int) -> dict[str, Any]:
    # Refill in small steps, not `rps` tokens once a second, so the limit is smooth like nginx's.
    interval = next((s for s in (0.05, 0.1, 0.25, 0.5) if (rps * s).is_integer()), 1.0)
    return {
        "max_tokens": burst,
        "tokens_per_fill": int(rps * interval),
        "fill_interval": f"{interval:g}s",
    }


def retry_after() -> list[dict[str, Any]]:
    return [{"header": {"key": "retry-after", "value": str(policy.RETRY_AFTER_S)}}]


def caller_rate_limit_filter(limits: tuple[policy.CallerLimit, ...]) -> dict[str, Any]:
    always = {"numerator": 100, "denominator": "HUNDRED"}
    rate_limits = []
    descriptors = []
    for limit in limits:
        for actions in _rate_limit(limit):
            rate_limits.append({"actions": actions})
            descriptors.append(
                {
                    "entries": _descriptor_entries(actions),
                    "token_bucket": token_bucket(limit.rps, limit.burst),
                }
            )
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": f"{_TYPES}.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "per_caller",
            "filter_enabled": {
                "runtime_key": "gateway.caller_limit_enabled",
                "default_value": always,
            },
            "filter_enforced": {
                "runtime_key": "gateway.caller_limit_enforced",
                "default_value": always,
            },
            "descriptors": descriptors,
            "rate_limits": rate_limits,
            "max_dynamic_descriptors": 100_000,
            "response_headers_to_add": retry_after(),
        },
    }
