"""Nginx's edge server: the per-address limit, the body limit, and who the caller is.

Nginx runs ``limit_req`` (preaccess phase) before ``auth_request`` (access phase), so one
server cannot limit on a subject it has not verified yet. The edge server therefore verifies,
and hands the request with the verified caller headers to the router server (``nginx.py``) over
a Unix socket, where the per-caller buckets key on them. The edge removes any caller header a
client sent; the router trusts them, since only the edge can reach its socket.

Verification is a subrequest to the customer service's ``policy.VERIFY_PATH`` with the client's
Authorization header, answered 204 with the caller (``X-Auth-Subject``, ``X-Auth-Scope``) or
401. Answers are cached for VERIFY_CACHE_S keyed on the Authorization header, so a client
polling with one token costs one verification per VERIFY_CACHE_S, not one per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from deploy.gateway import policy
from deploy.gateway.routes import Route

ROUTER = "gateway_router"
AUTH_LOCATION = "/_gateway/auth"
# Short, because a cached 204 outlives what happens to its token: a token that expires is still
# let through the edge for at most this long (the services verify every token again, so it gets
# no further), and a key the issuer withdraws is honoured that much longer. Long enough that a
# polling client (hundreds of requests/s with one token) is verified a few times a minute.
VERIFY_CACHE_S = 5
VERIFY_TIMEOUT_S = 5


def http_block(state_dir: Path) -> Iterator[str]:
    """Directives of the http block that the edge needs."""
    yield (
        f"proxy_cache_path {state_dir / 'auth_cache'} levels=1:2 keys_zone=gateway_auth:10m "
        "max_size=64m inactive=60s use_temp_path=off;"
    )
    # Whether a token is optional on the location that asked for verification (an anonymous
    # call of policy.ANONYMOUS with one of its methods).
    for call in policy.ANONYMOUS:
        yield f"map $request_method {_open_variable(call)} {{"
        yield from (f"    {method} 1;" for method in call.methods)
        yield "    default 0;"
        yield "}"
    yield f"upstream {ROUTER} {{"
    yield f"    server unix:{router_socket(state_dir)};"
    yield "    keepalive 64;"
    yield "}"


def router_socket(state_dir: Path) -> Path:
    return state_dir / "router.sock"


def _open_variable(call: policy.Anonymous) -> str:
    return "$gateway_open" + call.path.replace("/", "_")


def _to_router(*, optional: str | None) -> Iterator[str]:
    """The body of a location that verifies the caller and passes the request on."""
    if optional is not None:
        # Read by the verification subrequest, which shares the request's variables.
        yield f"set $gateway_optional {optional};"
        yield f"auth_request {AUTH_LOCATION};"
        yield "auth_request_set $gateway_subject $upstream_http_x_auth_subject;"
        yield "auth_request_set $gateway_scope $upstream_http_x_auth_scope;"
    yield f"proxy_pass http://{ROUTER};"


def _api_locations(routes: list[Route]) -> Iterator[str]:
    for call in policy.ANONYMOUS:
        if any(call.path.startswith(route.prefix) for route in routes):
            yield f"location = {call.path} {{"
            yield from (f"    {line}" for line in _to_router(optional=_open_variable(call)))
            yield "}"
    for route in routes:
        if route.prefix.startswith(policy.PROTECTED_PREFIX):
            yield f"location {route.prefix} {{"
            yield from (f"    {line}" for line in _to_router(optional="0"))
            yield "}"


def _auth_locations() -> Iterator[str]:
    yield f"location = {AUTH_LOCATION} {{"
    yield "    internal;"
    # A refusal of an optional token lets the request through, without a caller.
    yield "    proxy_intercept_errors on;"
    yield "    error_page 401 = @gateway_auth_refused;"
    yield '    if ($http_authorization = "") {'
    yield "        return 401;"
    yield "    }"
    yield f"    proxy_pass http://customer{policy.VERIFY_PATH};"
    yield "    proxy_method GET;"
    yield "    proxy_pass_request_body off;"
    yield '    proxy_set_header Content-Length "";'
    yield "    proxy_pass_request_headers off;"
    # A location's proxy_set_header replaces every inherited one, the server's `Connection ""`
    # too: without it Nginx asks the service to close the kept-alive connection it then reuses.
    yield '    proxy_set_header Connection "";'
    yield "    proxy_set_header Authorization $http_authorization;"
    yield "    proxy_set_header Host $http_host;"
    yield "    proxy_set_header X-Request-Id $gateway_request_id;"
    yield "    proxy_set_header X-Forwarded-For $remote_addr;"
    yield "    proxy_set_header X-Forwarded-Proto $scheme;"
    yield "    proxy_cache gateway_auth;"
    yield "    proxy_cache_key $http_authorization;"
    yield f"    proxy_cache_valid 204 401 {VERIFY_CACHE_S}s;"
    # Many requests with one new token wait for one verification instead of each asking.
    yield "    proxy_cache_lock on;"
    yield f"    proxy_cache_lock_timeout {VERIFY_TIMEOUT_S}s;"
    # The gateway decides how long an answer is kept, whatever the service's headers say.
    yield "    proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;"
    yield f"    proxy_read_timeout {VERIFY_TIMEOUT_S}s;"
    yield "}"
    yield "location @gateway_auth_refused {"
    yield "    if ($gateway_optional) {"
    yield "        return 204;"
    yield "    }"
    yield "    return 401;"
    yield "}"


def server(
    listen: tuple[str, int],
    routes: list[Route],
    limit: policy.RateLimit,
    shared: list[str],
) -> Iterator[str]:
    """``shared``: the directives both servers have (problem pages, request id)."""
    host, port = listen
    read_timeout = max((route.timeout_s for route in routes), default=60.0) + 5
    body = [
        f"listen {host}:{port};",
        f"client_max_body_size {policy.MAX_BODY_BYTES};",
        f"limit_req zone=per_client burst={limit.burst} nodelay;",
        *shared,
        # auth_request answers 500 when the verification itself failed (the customer service
        # did not answer): to the client the service is unavailable.
        "error_page 500 =503 @problem_503;",
        "add_header X-Request-Id $gateway_request_id always;",
        # Filled by auth_request_set where a location verifies; empty (not sent) elsewhere.
        'set $gateway_subject "";',
        'set $gateway_scope "";',
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Request-Id $gateway_request_id;",
        # The gateway is the edge: overwrite whatever X-Forwarded-* a client sent.
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host '';",
        "proxy_set_header Forwarded '';",
        # Replaces a client's own; an empty value sends none.
        "proxy_set_header X-Auth-Subject $gateway_subject;",
        "proxy_set_header X-Auth-Scope $gateway_scope;",
        # The router has the per-route timeouts and retries; the edge never retries.
        "proxy_next_upstream off;",
        f"proxy_read_timeout {read_timeout:g}s;",
        f"proxy_send_timeout {read_timeout:g}s;",
        "proxy_hide_header X-Gateway-Upstream;",
        "proxy_hide_header X-Gateway-Upstream-Status;",
        "",
        *_api_locations(routes),
        "location / {",
        *(f"    {line}" for line in _to_router(optional=None)),
        "}",
        *_auth_locations(),
    ]
    yield "server {"
    yield from (f"    {line}" if line else "" for line in body)
    yield "}"
