"""Render the Envoy gateway configuration from the route table and the edge policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deploy.gateway import envoy_auth, policy
from deploy.gateway.routes import READ_METHODS, READ_POSTS, REFUSED, Listener, Route, routes_of

ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "status": "%RESPONSE_CODE%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "duration_ms": "%DURATION%",
    "upstream": "%UPSTREAM_CLUSTER%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "flags": "%RESPONSE_FLAGS%",
}

_TYPES = "type.googleapis.com/envoy.extensions"

# The retry conditions nginx's `proxy_next_upstream error timeout http_502 http_504` has. Not 503:
# a service answering 503 is shedding load (`overloaded`, `unavailable`, with Retry-After), and
# trying again at once would add to the load it sheds.
RETRY_POLICY = {
    "retry_on": "connect-failure,refused-stream,reset,retriable-status-codes",
    "retriable_status_codes": [502, 504],
    "num_retries": policy.RETRIES,
    "retry_back_off": {"base_interval": "0.025s", "max_interval": "0.25s"},
}


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _cluster(name: str, host: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "connect_timeout": _seconds(policy.CONNECT_TIMEOUT_S),
        "type": "STRICT_DNS" if not host[0].isdigit() else "STATIC",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(host, port)}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_TYPES}.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {
                    "idle_timeout": _seconds(policy.UPSTREAM_IDLE_TIMEOUT_S)
                },
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
        # Like nginx's max_fails: only gateway failures count, an application's 500 does not.
        # An ejected lone host still gets traffic (Envoy's panic threshold), as in nginx.
        "outlier_detection": {
            "consecutive_5xx": policy.EJECT_AFTER_FAILURES,
            "enforcing_consecutive_5xx": 0,
            "consecutive_gateway_failure": policy.EJECT_AFTER_FAILURES,
            "enforcing_consecutive_gateway_failure": 100,
            "base_ejection_time": _seconds(policy.EJECT_FOR_S),
            "max_ejection_time": _seconds(policy.EJECT_FOR_S),
        },
    }


def _header(name: str, matcher: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "string_match": matcher}


def _routes(route: Route) -> list[dict[str, Any]]:
    """Retries only for requests that are safe to send twice: GET and HEAD, and a POST carrying
    an Idempotency-Key (the service answers its replay with the first response)."""
    action = {"cluster": route.upstream, "timeout": _seconds(route.timeout_s)}
    retrying = {**action, "retry_policy": RETRY_POLICY}
    idempotent = [
        [_header(":method", {"safe_regex": {"regex": "GET|HEAD"}})],
        [
            _header(":method", {"exact": "POST"}),
            _header(policy.IDEMPOTENCY_KEY_HEADER, {"safe_regex": {"regex": ".+"}}),
        ],
    ]
    return [
        *({"match": {"prefix": route.prefix, "headers": h}, "route": retrying} for h in idempotent),
        {"match": {"prefix": route.prefix}, "route": action},
    ]


def _direct(problem: policy.Problem, match: dict[str, Any]) -> dict[str, Any]:
    """An answer of the gateway's own (no upstream is asked), as problem+json."""
    return {
        "match": match,
        "direct_response": {"status": problem.status, "body": {"inline_string": problem.body()}},
        "response_headers_to_add": [
            {"header": {"key": "content-type", "value": policy.PROBLEM_CONTENT_TYPE}}
        ],
    }


def _not_found() -> dict[str, Any]:
    return _direct(policy.NOT_FOUND, {"prefix": "/"})


def _refusals(routes: list[Route]) -> list[dict[str, Any]]:
    """403 for the refused prefixes and for a write to a read-only route (but for the POSTs that
    are reads); before every route, since Envoy takes the first route that matches."""
    refused = [
        _direct(policy.FORBIDDEN, {"prefix": prefix})
        for prefix in REFUSED
        if any(prefix.startswith(route.prefix) for route in routes)
    ]
    writes = [
        _direct(
            policy.FORBIDDEN,
            {
                "prefix": route.prefix,
                "headers": [
                    {
                        "name": ":method",
                        "string_match": {"safe_regex": {"regex": "|".join(READ_METHODS)}},
                        "invert_match": True,
                    }
                ],
            },
        )
        for route in routes
        if route.read_only
    ]
    # A POST that is a read (READ_POSTS) goes through, ahead of the rule refusing writes.
    reads = [
        {
            "match": {"path": path, "headers": [_header(":method", {"exact": "POST"})]},
            "route": {"cluster": route.upstream, "timeout": _seconds(route.timeout_s)},
        }
        for route in routes
        if route.read_only
        for path in READ_POSTS
        if path.startswith(route.prefix)
    ]
    return [*refused, *reads, *writes]


def _route_table(routes: list[Route]) -> list[dict[str, Any]]:
    return [*_refusals(routes), *(r for route in routes for r in _routes(route)), _not_found()]


def _status_is(status: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"gateway.problem_{status}"},
            }
        }
    }


def _problem_mapper(problem: policy.Problem, when: dict[str, Any]) -> dict[str, Any]:
    mapper: dict[str, Any] = {
        "filter": when,
        "body": {"inline_string": problem.body()},
        "body_format_override": {
            "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
            "content_type": policy.PROBLEM_CONTENT_TYPE,
        },
    }
    if problem.status == 401:
        # jwt_authn sends its own WWW-Authenticate; this is only there if it ever did not.
        mapper["headers_to_add"] = [
            {
                "header": {"key": "www-authenticate", "value": policy.WWW_AUTHENTICATE},
                "append_action": "ADD_IF_ABSENT",
            }
        ]
    return mapper


# jwt_authn refuses a token for another audience with 403; to a client that is a token not
# valid here (RFC 6750 invalid_token), the same 401 as any other bad token.
_JWT_AUDIENCE_REFUSED = {
    "extension_filter": {
        "name": "envoy.access_loggers.extension_filters.cel",
        "typed_config": {
            "@type": f"{_TYPES}.access_loggers.filters.cel.v3.ExpressionFilter",
            "expression": (
                "response.code == 403 && "
                "response.code_details.startsWith('jwt_authn_access_denied')"
            ),
        },
    }
}


def _local_replies() -> dict[str, Any]:
    """Envoy's own error replies (401, 403, 413, 429, 50x) as problem+json, like every other
    error. The first mapper that matches a reply applies."""
    audience = {
        **_problem_mapper(policy.NOT_AUTHENTICATED, _JWT_AUDIENCE_REFUSED),
        "status_code": policy.NOT_AUTHENTICATED.status,
    }
    return {
        "mappers": [
            audience,
            *(_problem_mapper(p, _status_is(p.status)) for p in policy.GATEWAY_PROBLEMS),
        ]
    }


def _rate_limit_filter(limit: policy.RateLimit) -> dict[str, Any]:
    """One token bucket per client address (a wildcard descriptor), like nginx's limit_req zone."""
    always = {"numerator": 100, "denominator": "HUNDRED"}
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": f"{_TYPES}.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "per_client",
            "token_bucket": envoy_auth.token_bucket(limit.rps, limit.burst),
            "filter_enabled": {
                "runtime_key": "gateway.rate_limit_enabled",
                "default_value": always,
            },
            "filter_enforced": {
                "runtime_key": "gateway.rate_limit_enforced",
                "default_value": always,
            },
            "descriptors": [
                {
                    "entries": [{"key": "remote_address"}],
                    "token_bucket": envoy_auth.token_bucket(limit.rps, limit.burst),
                }
            ],
            "rate_limits": [{"actions": [{"remote_address": {}}]}],
            "max_dynamic_descriptors": 100_000,
            "always_consume_default_token_bucket": False,
            "response_headers_to_add": envoy_auth.retry_after(),
        },
    }


# Envoy keeps a client's X-Request-Id (preserve_external_request_id) and has no setting to check
# its shape, so a Lua filter replaces a malformed one before anything logs or forwards it. The
# pattern is policy.REQUEST_ID_PATTERN's, in Lua's syntax.
REQUEST_ID_LUA = """\
math.randomseed(os.time() + math.floor(os.clock() * 1000000))

local function fresh()
  local parts = {}
  for i = 1, 8 do
    parts[i] = string.format("%04x", math.random(0, 65535))
  end
  return table.concat(parts)
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local id = headers:get("x-request-id")
  if id ~= nil and (#id < 8 or #id > 64 or not string.match(id, "^[A-Za-z0-9._%-]+$")) then
    headers:replace("x-request-id", fresh())
  end
end
"""


def _request_id_filter() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": f"{_TYPES}.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": REQUEST_ID_LUA},
        },
    }


def _buffer_and_route() -> list[dict[str, Any]]:
    return [
        {
            # Buffers the whole body (as nginx does) and refuses a larger one with 413.
            "name": "envoy.filters.http.buffer",
            "typed_config": {
                "@type": f"{_TYPES}.filters.http.buffer.v3.Buffer",
                "max_request_bytes": policy.MAX_BODY_BYTES,
            },
        },
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": f"{_TYPES}.filters.http.router.v3.Router"},
        },
    ]


def _public_filters(
    limit: policy.RateLimit, access: envoy_auth.Access, routes: list[Route]
) -> list[dict[str, Any]]:
    return [
        _request_id_filter(),
        envoy_auth.strip_caller_headers(),
        _rate_limit_filter(limit),
        envoy_auth.jwt_filter(access, routes),
        envoy_auth.caller_rate_limit_filter(access.caller_limits),
        *_buffer_and_route(),
    ]


def _operator_filters(limit: policy.RateLimit) -> list[dict[str, Any]]:
    """No bearer tokens here: every operator surface has its own login (Django admin, Flower's
    basic auth), and readiness and metrics are for the operator's own probes and scrapers."""
    return [
        _request_id_filter(),
        envoy_auth.strip_caller_headers(),
        _rate_limit_filter(limit),
        *_buffer_and_route(),
    ]


TRACE_CLUSTER = "otlp_collector"


def _tracing(tracing: policy.Tracing) -> dict[str, Any]:
    """Envoy's OpenTelemetry tracer: a span per request, its context passed on upstream as
    ``traceparent`` (the services' spans are its children), exported over OTLP/HTTP."""
    return {
        "random_sampling": {"value": tracing.sampling_percent},
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "http_service": {
                    "http_uri": {"uri": tracing.url, "cluster": TRACE_CLUSTER, "timeout": "2s"}
                },
                "service_name": tracing.service_name,
            },
        },
    }


def _connection_manager(
    name: str,
    routes: list[Route],
    http_filters: list[dict[str, Any]],
    tracing: policy.Tracing | None = None,
) -> dict[str, Any]:
    return {
        **({"tracing": _tracing(tracing)} if tracing else {}),
        "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name,
        "codec_type": "AUTO",
        # Routes, token rules and rate limits all match on the path: one spelling per path
        # ("/a/./b", "/a//b" are "/a/b"), so no other spelling slips past an exact match.
        "normalize_path": True,
        "merge_slashes": True,
        # A service would read x_auth_subject as X-Auth-Subject (WSGI maps both to one name).
        "common_http_protocol_options": {"headers_with_underscores_action": "DROP_HEADER"},
        # The gateway is the edge: the peer address is the client, whatever X-Forwarded-For a
        # client sends.
        "use_remote_address": True,
        "xff_num_trusted_hops": 0,
        "skip_xff_append": True,
        # No client is "internal" (by default loopback and private addresses are), so none may
        # steer Envoy with x-envoy-* headers such as x-envoy-retry-on. An empty list would mean
        # the default; the discard-only prefix of RFC 6666 matches nobody.
        "internal_address_config": {
            "unix_sockets": False,
            "cidr_ranges": [{"address_prefix": "100::", "prefix_len": 64}],
        },
        "generate_request_id": True,
        "preserve_external_request_id": True,
        "always_set_request_id_in_response": True,
        "access_log": [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": f"{_TYPES}.access_loggers.stream.v3.StdoutAccessLog",
                    "log_format": {"json_format": ACCESS_LOG_FORMAT},
                },
            }
        ],
        "local_reply_config": _local_replies(),
        "route_config": {
            "name": name,
            # Overwrite, not append: services take the last X-Forwarded-For entry as the client.
            # Other claims about the client or host are dropped.
            "request_headers_to_remove": ["forwarded", "x-forwarded-host"],
            "request_headers_to_add": [
                {
                    "header": {
                        "key": "x-forwarded-for",
                        "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                    },
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
            "virtual_hosts": [
                {
                    "name": name,
                    "domains": ["*"],
                    "routes": _route_table(routes),
                }
            ],
        },
        "http_filters": http_filters,
    }


def _listener(name: str, address: tuple[str, int], manager: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": _address(*address),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def render(
    *,
    listen: tuple[str, int],
    operator_listen: tuple[str, int],
    admin: tuple[str, int],
    upstreams: Mapping[str, tuple[str, int]],
    rate_limit: policy.RateLimit | None = None,
    identity: policy.Identity | None = None,
    caller_limits: tuple[policy.CallerLimit, ...] | None = None,
    tracing: policy.Tracing | None = None,
) -> dict[str, Any]:
    """Envoy bootstrap: the public and the operator listener, each routing by path prefix the
    routes the table gives it, and one cluster per upstream.

    Routes whose upstream is not given are left out (they answer 404). The admin listener,
    with the Prometheus stats and the runtime it can change, is a separate address that is
    never routed to; keep it on loopback. Settings not given come from the environment
    (policy's ``from_env``), but tracing: only on when ``tracing`` is given.
    """
    limit = rate_limit or policy.RateLimit.from_env()
    identity = identity or policy.Identity.from_env()
    jwks_url, jwks_cluster, extra_cluster = envoy_auth.jwks_source(identity, upstreams)
    access = envoy_auth.Access(
        identity=identity,
        jwks_url=jwks_url,
        jwks_cluster=jwks_cluster,
        caller_limits=caller_limits if caller_limits is not None else policy.caller_limits(),
    )
    public = routes_of(Listener.PUBLIC, upstreams)
    operator = routes_of(Listener.OPERATOR, upstreams)
    clusters = [_cluster(name, host, port) for name, (host, port) in upstreams.items()]
    if tracing:
        clusters.append(_cluster(TRACE_CLUSTER, *tracing.host_port))
    return {
        "admin": {"address": _address(*admin)},
        "static_resources": {
            "listeners": [
                _listener(
                    "gateway",
                    listen,
                    _connection_manager(
                        "gateway", public, _public_filters(limit, access, public), tracing
                    ),
                ),
                _listener(
                    "operator",
                    operator_listen,
                    _connection_manager("operator", operator, _operator_filters(limit), tracing),
                ),
            ],
            "clusters": [*clusters, *([extra_cluster] if extra_cluster else [])],
        },
    }
