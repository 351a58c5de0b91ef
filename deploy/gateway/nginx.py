"""Render the Nginx gateway configuration from the same route table and edge policy as Envoy's.

Three Nginx specifics shape the output:

- Two servers in one Nginx. The edge (``nginx_edge``) limits per address, verifies the caller
  and passes the request over a Unix socket to the router (here), which limits per caller and
  routes. One server cannot do both: ``limit_req`` runs before ``auth_request``, so it could
  only key on the unverified bearer token, and a caller holding many tokens (one per login)
  would have a bucket per token. The price is one more local hop per request.
- ``proxy_next_upstream`` cannot depend on the request, so each route has a twin named location
  that retries; a request that is safe to send twice (``$gateway_retryable``) is handed to it.
- Nginx retries on the *next* server of an upstream only. Each upstream therefore lists its
  address once more as two backups that are never marked failed: a lone instance gets the same
  two retries Envoy makes, and stays in use while it is "ejected" (Envoy's panic threshold).

Differences from Envoy that remain: Nginx asks the customer service to verify a token (cached
for ``nginx_edge.VERIFY_CACHE_S``) where Envoy checks the signature itself against the JWKS;
and its buckets (``limit_req``) admit ``burst + 1`` requests at once where Envoy's admit
``burst``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from deploy.gateway import nginx_edge, policy
from deploy.gateway.routes import READ_METHODS, READ_POSTS, REFUSED, Listener, Route, routes_of

ACCESS_LOG_FORMAT = (
    '{"time":"$time_iso8601","request_id":"$gateway_request_id","client":"$remote_addr",'
    '"method":"$request_method","path":"$request_uri","status":$status,'
    '"bytes_in":$request_length,"bytes_out":$bytes_sent,"duration_ms":$gateway_duration_ms,'
    '"upstream":"$upstream_http_x_gateway_upstream",'
    '"upstream_status":"$upstream_http_x_gateway_upstream_status"}'
)

# The same requests as Envoy's retrying routes: GET and HEAD, and POST with an Idempotency-Key.
RETRYABLE_MAP = """\
map "$request_method $http_idempotency_key" $gateway_retryable {
    default 0;
    "~^(GET|HEAD) " 1;
    "~^POST ." 1;
}"""

PREAMBLE_MAPS = """\
# A client's X-Request-Id is kept when it is well formed (policy.REQUEST_ID_PATTERN); otherwise
# Nginx makes one.
map $http_x_request_id $gateway_request_id {
    "~^[A-Za-z0-9._-]{8,64}$" $http_x_request_id;
    default $request_id;
}
# $request_time is seconds with a fraction ("0.004"); the log has whole milliseconds like Envoy's.
map $request_time $gateway_duration_ms {
    "~^0\\.0*(?<gateway_ms>\\d+)$" $gateway_ms;
    "~^(?<gateway_s>\\d+)\\.(?<gateway_frac>\\d+)$" $gateway_s$gateway_frac;
    default 0;
}"""


def _quoted(body: str) -> str:
    if "'" in body or "$" in body:
        raise ValueError(f"cannot quote for nginx: {body}")
    return f"'{body}'"


def _challenge_map() -> Iterator[str]:
    """A challenge on a 401 from the gateway unless it has one already (the verification's,
    which auth_request passes on); add_header adds nothing for an empty value."""
    yield "map $sent_http_www_authenticate $gateway_www_authenticate {"
    yield f'    "" {_quoted(policy.WWW_AUTHENTICATE)};'
    yield '    default "";'
    yield "}"


def _problem_locations() -> Iterator[str]:
    for problem in policy.GATEWAY_PROBLEMS:
        yield f"location @problem_{problem.status} {{"
        yield f"    default_type {policy.PROBLEM_CONTENT_TYPE};"
        if problem.status == 429:
            # A location's own add_header replaces every inherited one.
            yield f"    add_header Retry-After {policy.RETRY_AFTER_S} always;"
            yield "    add_header X-Request-Id $gateway_request_id always;"
        if problem.status == 401:
            # The verification's own challenge when it sent one (auth_request passes it on).
            yield "    add_header WWW-Authenticate $gateway_www_authenticate always;"
            yield "    add_header X-Request-Id $gateway_request_id always;"
        yield f"    return {problem.status} {_quoted(problem.body())};"
        yield "}"


def _error_pages() -> Iterator[str]:
    for problem in policy.GATEWAY_PROBLEMS:
        yield f"error_page {problem.status} @problem_{problem.status};"


def _timeouts(route: Route) -> Iterator[str]:
    yield f"proxy_read_timeout {route.timeout_s:g}s;"
    yield f"proxy_send_timeout {route.timeout_s:g}s;"


def _only_methods(methods: tuple[str, ...]) -> Iterator[str]:
    """Inside a location: 403 for any other method."""
    yield f"    if ($request_method !~ ^({'|'.join(methods)})$) {{"
    yield "        return 403;"
    yield "    }"


def _proxied_once(route: Route) -> Iterator[str]:
    """Inside a location: to the upstream, never retried on another one."""
    yield "    proxy_next_upstream off;"
    yield f"    proxy_pass http://{route.upstream};"
    yield from (f"    {line}" for line in _timeouts(route))


def _read_post_locations(route: Route) -> Iterator[str]:
    """An exact location (it wins over the prefix one) for each POST under a read-only route
    that is a read: it passes POST too, and nothing is retried."""
    for path in READ_POSTS:
        if not (route.read_only and path.startswith(route.prefix)):
            continue
        yield f"location = {path} {{"
        yield from (f"    {line}" for line in _error_pages())
        yield from _only_methods((*READ_METHODS, "POST"))
        yield from _proxied_once(route)
        yield "}"


def _route_locations(route: Route) -> Iterator[str]:
    yield from _read_post_locations(route)
    retry = f"@retry_{route.slug}"
    yield f"location {route.prefix} {{"
    # A location's own error_page replaces every inherited one, so they are all repeated here.
    for line in [*_error_pages(), f"error_page 418 = {retry};"]:
        yield f"    {line}"
    if route.read_only:
        # Before the retry below, which would hand the request to a location without this.
        yield from _only_methods(READ_METHODS)
    yield "    if ($gateway_retryable) {"
    yield "        return 418;"
    yield "    }"
    yield from _proxied_once(route)
    yield "}"
    yield f"location {retry} {{"
    # Not http_503: a service answering 503 sheds load; retrying it at once adds to it.
    yield "    proxy_next_upstream error timeout http_502 http_504 non_idempotent;"
    yield f"    proxy_next_upstream_tries {1 + policy.RETRIES};"
    yield f"    proxy_next_upstream_timeout {route.timeout_s:g}s;"
    yield f"    proxy_pass http://{route.upstream};"
    yield from (f"    {line}" for line in _timeouts(route))
    yield "}"


def _upstream(name: str, host: str, port: int) -> Iterator[str]:
    address = f"{host}:{port}"
    yield f"upstream {name} {{"
    yield (
        f"    server {address} max_fails={policy.EJECT_AFTER_FAILURES} "
        f"fail_timeout={policy.EJECT_FOR_S}s;"
    )
    for _ in range(policy.RETRIES):
        yield f"    server {address} backup max_fails=0;"
    yield "    keepalive 32;"
    yield f"    keepalive_timeout {policy.UPSTREAM_IDLE_TIMEOUT_S:g}s;"
    yield "}"


def client_net_map() -> Iterator[str]:
    """$gateway_client_net: an IPv6 client by its /64 (the first 8 of its 16 address bytes), an
    IPv4 one by its address."""
    yield "map $binary_remote_addr $gateway_client_net {"
    yield '    "~(?s)^(?<gateway_net64>.{8}).{8}$" $gateway_net64;'
    yield "    default $binary_remote_addr;"
    yield "}"


def _caller_limits(limits: tuple[policy.CallerLimit, ...]) -> Iterator[str]:
    """A limit_req zone per bucket, keyed as policy.Key says; an empty key is not counted, so a
    request outside a bucket's route has an empty key for it."""
    yield from client_net_map()
    # The prefixes keep a subject from ever being taken for an address, or the other way round.
    yield "map $http_x_auth_subject $gateway_caller {"
    yield '    "" "a$gateway_client_net";'
    yield '    default "s$http_x_auth_subject";'
    yield "}"
    keys = {
        policy.Key.SUBJECT: "$http_x_auth_subject",
        policy.Key.ADDRESS: "$gateway_client_net",
        policy.Key.CALLER: "$gateway_caller",
    }
    for limit in limits:
        key = keys[limit.key]
        if limit.path is not None:
            variable = f"$gateway_limit_{limit.name}"
            yield f'map "$request_method $uri" {variable} {{'
            yield f'    "{limit.method} {limit.path}" {key};'
            yield '    default "";'
            yield "}"
            key = variable
        yield f"limit_req_zone {key} zone={limit.name}:10m rate={limit.rps}r/s;"


def _shared() -> list[str]:
    """What both servers say the same way."""
    return [
        # Errors raised inside a named location (a retried request) get problem+json too.
        "recursive_error_pages on;",
        *_error_pages(),
        "proxy_hide_header X-Request-Id;",
        *_problem_locations(),
    ]


def _router(
    state_dir: Path, routes: list[Route], limits: tuple[policy.CallerLimit, ...]
) -> Iterator[str]:
    body = [
        f"listen unix:{nginx_edge.router_socket(state_dir)};",
        f"client_max_body_size {policy.MAX_BODY_BYTES};",
        # The edge logs every request once, with what the router says about the upstream.
        "access_log off;",
        "add_header X-Gateway-Upstream $proxy_host always;",
        "add_header X-Gateway-Upstream-Status $upstream_status always;",
        # The edge names the client in X-Forwarded-For; only the edge can reach this socket.
        "set_real_ip_from unix:;",
        "real_ip_header X-Forwarded-For;",
        *(f"limit_req zone={limit.name} burst={limit.burst} nodelay;" for limit in limits),
        *_shared(),
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Request-Id $gateway_request_id;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        f"proxy_connect_timeout {policy.CONNECT_TIMEOUT_S:g}s;",
        "",
        *(line for route in routes for line in _route_locations(route)),
        *_not_found_location(),
    ]
    yield "server {"
    yield from (f"    {line}" if line else "" for line in body)
    yield "}"


def _not_found_location() -> Iterator[str]:
    yield "location / {"
    yield f"    default_type {policy.PROBLEM_CONTENT_TYPE};"
    yield f"    return 404 {_quoted(policy.NOT_FOUND.body())};"
    yield "}"


def _operator(
    listen: tuple[str, int], routes: list[Route], limit: policy.RateLimit
) -> Iterator[str]:
    """The operator listener: admin, readiness, metrics and Flower, straight to the upstreams.
    No bearer tokens (each surface has its own login), so neither the verification nor the
    per-caller buckets of the public side."""
    host, port = listen
    refused = [p for p in REFUSED if any(p.startswith(route.prefix) for route in routes)]
    body = [
        f"listen {host}:{port};",
        f"client_max_body_size {policy.MAX_BODY_BYTES};",
        f"limit_req zone=per_client burst={limit.burst} nodelay;",
        *_shared(),
        "add_header X-Request-Id $gateway_request_id always;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Request-Id $gateway_request_id;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host '';",
        "proxy_set_header Forwarded '';",
        # Only the public side's verification may name a caller.
        'proxy_set_header X-Auth-Subject "";',
        'proxy_set_header X-Auth-Scope "";',
        f"proxy_connect_timeout {policy.CONNECT_TIMEOUT_S:g}s;",
        "",
        *(line for prefix in refused for line in (f"location {prefix} {{", "    return 403;", "}")),
        *(line for route in routes for line in _route_locations(route)),
        *_not_found_location(),
    ]
    yield "server {"
    yield from (f"    {line}" if line else "" for line in body)
    yield "}"


def render(
    *,
    listen: tuple[str, int],
    operator_listen: tuple[str, int],
    upstreams: Mapping[str, tuple[str, int]],
    state_dir: Path,
    user: str | None = None,
    workers: int | str = "auto",
    rate_limit: policy.RateLimit | None = None,
    caller_limits: tuple[policy.CallerLimit, ...] | None = None,
) -> str:
    """nginx.conf: the edge and the router server (the public listener), the operator server,
    a location per route, one upstream block per upstream.

    ``state_dir`` holds the pid file, temporary files, the verification cache and the router's
    socket, so several gateways can run side by side without root's /var paths. Run it in the
    foreground with ``nginx -e stderr -c FILE -g 'daemon off;'``. ``user`` is only meaningful
    when Nginx starts as root. Settings not given come from the environment.
    """
    limit = rate_limit or policy.RateLimit.from_env()
    limits = caller_limits if caller_limits is not None else policy.caller_limits()
    routes = routes_of(Listener.PUBLIC, upstreams)
    temp = {kind: state_dir / kind for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    lines = [
        "# Generated by deploy.gateway.nginx from deploy/gateway/routes.py and policy.py.",
        *([f"user {user};"] if user else []),
        f"worker_processes {workers};",
        f"pid {state_dir / 'nginx.pid'};",
        "error_log stderr warn;",
        "events {",
        "    worker_connections 4096;",
        "}",
        "http {",
        *(f"    {kind}_temp_path {path};" for kind, path in temp.items()),
        "    server_tokens off;",
        *(f"    {line}" for line in PREAMBLE_MAPS.splitlines()),
        *(f"    {line}" for line in RETRYABLE_MAP.splitlines()),
        *(f"    {line}" for line in _challenge_map()),
        f"    log_format gateway escape=json '{ACCESS_LOG_FORMAT}';",
        "    access_log /dev/stdout gateway;",
        f"    limit_req_zone $binary_remote_addr zone=per_client:10m rate={limit.rps}r/s;",
        *(f"    {line}" for line in _caller_limits(limits)),
        "    limit_req_status 429;",
        "    limit_req_log_level warn;",
        *(f"    {line}" for line in nginx_edge.http_block(state_dir)),
        "",
        *(f"    {line}" for name, addr in upstreams.items() for line in _upstream(name, *addr)),
        "",
        *(f"    {line}" for line in nginx_edge.server(listen, routes, limit, _shared())),
        *(f"    {line}" for line in _router(state_dir, routes, limits)),
        *(
            f"    {line}"
            for line in _operator(operator_listen, routes_of(Listener.OPERATOR, upstreams), limit)
        ),
        "}",
    ]
    return "\n".join(lines) + "\n"
