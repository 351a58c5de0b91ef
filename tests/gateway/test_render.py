"""Both gateway configs come from the one route table, and each gateway accepts its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.gateway import envoy, nginx, policy
from deploy.gateway.routes import FLOWER, READ_POSTS, REFUSED, ROUTES, Listener, routes_of
from deploy.local.processes import NGINX

UPSTREAMS = {
    **{name: ("127.0.0.1", 18001 + i) for i, name in enumerate(("customer", "account", "order"))},
    "orchestrator": ("127.0.0.1", 18004),
    FLOWER: ("127.0.0.1", 18055),
}


DEFAULT = policy.RateLimit()


def envoy_config(limit: policy.RateLimit = DEFAULT) -> dict:
    return envoy.render(
        listen=("127.0.0.1", 18000),
        operator_listen=("127.0.0.1", 18100),
        admin=("127.0.0.1", 19901),
        upstreams=UPSTREAMS,
        rate_limit=limit,
    )


def nginx_config(state: Path) -> str:
    return nginx.render(
        listen=("127.0.0.1", 18000),
        operator_listen=("127.0.0.1", 18100),
        upstreams=UPSTREAMS,
        state_dir=state,
        rate_limit=DEFAULT,
    )


ENVOY_LISTENERS = {Listener.PUBLIC: "gateway", Listener.OPERATOR: "operator"}


def envoy_routes(config: dict, listener: Listener = Listener.PUBLIC) -> list[dict]:
    [found] = [
        entry
        for entry in config["static_resources"]["listeners"]
        if entry["name"] == ENVOY_LISTENERS[listener]
    ]
    manager = found["filter_chains"][0]["filters"][0]
    return manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]


def nginx_servers(config: str) -> dict[Listener, str]:
    """The public listener's router server and the operator server (the edge only verifies and
    passes everything on to the router)."""
    _, _edge, router, operator = config.split("\n    server {\n")
    return {Listener.PUBLIC: router, Listener.OPERATOR: operator}


def located(server: str) -> set[tuple[str, str, str]]:
    return set(
        re.findall(
            r"location (/\S*) \{(?:(?!location ).)*?proxy_pass http://(\w+);\s*"
            r"proxy_read_timeout (\S+);",
            server,
            re.S,
        )
    )


@pytest.mark.parametrize("listener", list(Listener))
def test_both_gateways_have_every_route_of_the_table_on_its_listener(
    tmp_path: Path, listener: Listener
) -> None:
    table = {(r.prefix, r.upstream, f"{r.timeout_s:g}s") for r in routes_of(listener)}
    routed = {
        (r["match"]["prefix"], r["route"]["cluster"], r["route"]["timeout"])
        for r in envoy_routes(envoy_config(), listener)
        if "route" in r and "prefix" in r["match"]
    }

    assert routed == table
    assert located(nginx_servers(nginx_config(tmp_path))[listener]) == table
    assert {r.upstream for r in ROUTES} == set(UPSTREAMS)


def test_operator_surfaces_are_not_on_the_public_listener() -> None:
    public = {r.prefix for r in routes_of(Listener.PUBLIC)}
    operator = {r.prefix for r in routes_of(Listener.OPERATOR)}

    for service in ("customer", "account", "order", "orchestrator"):
        assert {f"/{service}/admin/", f"/{service}/readyz", f"/{service}/metrics"} <= operator
        assert {f"/{service}/healthz", f"/{service}/api/"} <= public
        assert not any(p.startswith((f"/{service}/admin", f"/{service}/readyz")) for p in public)
        assert not any(p.startswith(f"/{service}/metrics") for p in public)
    assert "/flower/" in operator
    assert not any(p.startswith("/flower") for p in public)
    assert not any(p.startswith("/api/") for p in operator)


def test_flower_control_and_writes_are_refused_by_envoy_before_any_route() -> None:
    routes = envoy_routes(envoy_config(), Listener.OPERATOR)
    first_route = next(i for i, r in enumerate(routes) if "prefix" in r["match"] and "route" in r)
    refused = [r for r in routes[:first_route] if "direct_response" in r]

    assert [r["match"]["prefix"] for r in refused] == [*REFUSED, "/flower/"]
    assert {r["direct_response"]["status"] for r in refused} == {403}
    [writes] = [r for r in refused if r["match"].get("headers")]
    assert writes["match"]["headers"][0]["invert_match"] is True
    assert json.loads(writes["direct_response"]["body"]["inline_string"])["code"] == "forbidden"


def test_flowers_task_list_query_is_the_one_post_envoy_passes() -> None:
    routes = envoy_routes(envoy_config(), Listener.OPERATOR)
    writes = next(i for i, r in enumerate(routes) if r["match"].get("prefix") == "/flower/")
    reads = [(i, r) for i, r in enumerate(routes) if "path" in r["match"]]

    assert [r["match"]["path"] for _, r in reads] == list(READ_POSTS) == ["/flower/tasks/datatable"]
    for i, r in reads:
        assert i < writes  # ahead of the rule that refuses every other POST
        assert r["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "POST"}}]
        assert r["route"]["cluster"] == FLOWER
    assert not any("path" in r["match"] for r in envoy_routes(envoy_config(), Listener.PUBLIC))


def test_flower_control_and_writes_are_refused_by_nginx(tmp_path: Path) -> None:
    operator = nginx_servers(nginx_config(tmp_path))[Listener.OPERATOR]

    for prefix in REFUSED:
        assert re.search(rf"location {re.escape(prefix)} \{{\s*return 403;", operator)
    flower = operator[operator.index("location /flower/ {") :]
    assert flower.index("!~ ^(GET|HEAD)$") < flower.index("return 418;")
    # The task list's query, an exact location that passes POST (and nothing else that writes).
    query = re.search(r"location = /flower/tasks/datatable \{(.*?)\n    \}", operator, re.S)
    assert query and "!~ ^(GET|HEAD|POST)$" in query[1] and "proxy_pass http://flower;" in query[1]
    assert "tasks/datatable" not in nginx_servers(nginx_config(tmp_path))[Listener.PUBLIC]


def test_only_idempotent_requests_have_envoy_retries() -> None:
    routes = [
        r for r in envoy_routes(envoy_config()) if r["match"]["prefix"] == "/api/v1/checkouts"
    ]

    retried = [r["match"].get("headers") for r in routes if "retry_policy" in r["route"]]
    plain = [r["match"].get("headers") for r in routes if "retry_policy" not in r["route"]]

    assert [[h["name"] for h in headers] for headers in retried] == [
        [":method"],
        [":method", "idempotency-key"],
    ]
    assert plain == [None]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, policy.RateLimit()),
        ({"GATEWAY_RATE_LIMIT_RPS": "7", "GATEWAY_RATE_LIMIT_BURST": "9"}, policy.RateLimit(7, 9)),
    ],
)
def test_the_rate_limit_comes_from_the_environment(
    environ: dict[str, str], expected: policy.RateLimit
) -> None:
    assert policy.RateLimit.from_env(environ) == expected


def http_filters(config: dict) -> list[dict]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters: list[dict] = manager["typed_config"]["http_filters"]
    return filters


def rate_limit_filter(config: dict, stat_prefix: str) -> dict:
    [found] = [
        f["typed_config"]
        for f in http_filters(config)
        if f["typed_config"].get("stat_prefix") == stat_prefix
    ]
    return found


def per_second(bucket: dict) -> tuple[float, int]:
    return bucket["tokens_per_fill"] / float(bucket["fill_interval"].rstrip("s")), bucket[
        "max_tokens"
    ]


def test_the_envoy_bucket_refills_smoothly_at_the_given_rate() -> None:
    for limit in (policy.RateLimit(1000, 2000), policy.RateLimit(7, 9), policy.RateLimit(30, 5)):
        ratelimit = rate_limit_filter(envoy_config(limit), "per_client")
        bucket = ratelimit["descriptors"][0]["token_bucket"]

        assert per_second(bucket) == (limit.rps, limit.burst)


def test_every_caller_bucket_is_in_envoy_at_its_size() -> None:
    limits = policy.caller_limits({"GATEWAY_RATE_LIMIT_CHECKOUT_RPS": "3"})
    config = envoy.render(
        listen=("127.0.0.1", 18000),
        operator_listen=("127.0.0.1", 18100),
        admin=("127.0.0.1", 19901),
        upstreams=UPSTREAMS,
        rate_limit=DEFAULT,
        caller_limits=limits,
    )
    ratelimit = rate_limit_filter(config, "per_caller")
    sizes = {
        next(e["value"] for e in d["entries"] if e["key"] == "limit"): per_second(d["token_bucket"])
        for d in ratelimit["descriptors"]
    }

    assert sizes == {limit.name: (limit.rps, limit.burst) for limit in limits}
    assert sizes["checkout"][0] == 3
    # The caller bucket is keyed on the subject, or on the address when there is none.
    assert len(ratelimit["descriptors"]) == len(limits) + 1


def test_envoy_strips_the_caller_headers_before_it_verifies_and_limits_after() -> None:
    names = [
        f["typed_config"].get("stat_prefix") or f["name"].rsplit(".", 1)[1]
        for f in http_filters(envoy_config())
    ]

    assert names == [
        "lua",  # the request id is checked first, so every later filter logs a good one
        "header_mutation",
        "per_client",
        "jwt_authn",
        "per_caller",
        "buffer",
        "router",
    ]


def jwt_config(config: dict) -> dict:
    [found] = [f["typed_config"] for f in http_filters(config) if f["name"].endswith("jwt_authn")]
    return found


def test_envoy_needs_a_token_on_the_api_except_the_anonymous_calls() -> None:
    rules = jwt_config(envoy_config())["rules"]
    optional = [r["match"]["path"] for r in rules if "requires_any" in r["requires"]]
    required = [r["match"]["prefix"] for r in rules if "provider_name" in r["requires"]]

    assert optional == ["/api/v1/menu", "/api/v1/customers", "/api/v1/tokens"]
    assert required == [r.prefix for r in ROUTES if r.prefix.startswith("/api/")]


def test_envoy_fetches_the_bundled_jwks_from_the_customer_upstream() -> None:
    provider = jwt_config(envoy_config())["providers"]["cafe"]
    host, port = UPSTREAMS["customer"]

    assert provider["remote_jwks"]["http_uri"] == {
        "uri": f"http://{host}:{port}/customer/.well-known/jwks.json",
        "cluster": "customer",
        "timeout": "2s",
    }
    assert provider["remote_jwks"]["cache_duration"] == "60s"
    assert (provider["issuer"], provider["audiences"]) == (
        "http://127.0.0.1:8000/customer",
        ["cafe"],
    )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, policy.Identity()),
        (
            {
                "OIDC_ISSUER": "https://idp.example/",
                "OIDC_AUDIENCE": "api",
                "OIDC_JWKS_URL": "https://idp.example/jwks",
                "GATEWAY_JWKS_CACHE_S": "300",
            },
            policy.Identity("https://idp.example/", "api", "https://idp.example/jwks", 300),
        ),
    ],
)
def test_the_identity_provider_comes_from_the_environment(
    environ: dict[str, str], expected: policy.Identity
) -> None:
    assert policy.Identity.from_env(environ) == expected


def test_every_caller_bucket_can_be_set_from_the_environment() -> None:
    environ = {
        f"{limit.env_prefix}_{part}": str(100 + i)
        for i, limit in enumerate(policy.CALLER_LIMITS)
        for part in ("RPS", "BURST")
    }

    limits = policy.caller_limits(environ)

    assert [(lim.rps, lim.burst) for lim in limits] == [
        (100 + i, 100 + i) for i in range(len(limits))
    ]
    with pytest.raises(ValueError, match="GATEWAY_RATE_LIMIT_LOGIN"):
        policy.caller_limits({"GATEWAY_RATE_LIMIT_LOGIN_BURST": "0"})


EXTERNAL = policy.Identity(issuer="https://idp.example/", jwks_url="https://idp.example/jwks")


@pytest.mark.parametrize("identity", [policy.Identity(), EXTERNAL], ids=["bundled", "external"])
def test_envoy_accepts_its_config(tmp_path: Path, identity: policy.Identity) -> None:
    path = tmp_path / "envoy.json"
    config = envoy.render(
        listen=("127.0.0.1", 18000),
        operator_listen=("127.0.0.1", 18100),
        admin=("127.0.0.1", 19901),
        upstreams=UPSTREAMS,
        rate_limit=DEFAULT,
        identity=identity,
    )
    path.write_text(json.dumps(config))
    envoy_bin = Path(sys.executable).parent / "envoy"

    checked = subprocess.run(
        [str(envoy_bin), "--mode", "validate", "-c", str(path)], capture_output=True, text=True
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_external_jwks_is_fetched_over_tls_from_a_cluster_of_its_own() -> None:
    config = envoy.render(
        listen=("127.0.0.1", 18000),
        operator_listen=("127.0.0.1", 18100),
        admin=("127.0.0.1", 19901),
        upstreams=UPSTREAMS,
        rate_limit=DEFAULT,
        identity=EXTERNAL,
    )
    [cluster] = [c for c in config["static_resources"]["clusters"] if c["name"] == "oidc_jwks"]
    uri = jwt_config(config)["providers"]["cafe"]["remote_jwks"]["http_uri"]
    tls = cluster["transport_socket"]["typed_config"]

    assert (uri["uri"], uri["cluster"]) == ("https://idp.example/jwks", "oidc_jwks")
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "idp.example", "port_value": 443}
    assert tls["sni"] == "idp.example"
    assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "idp.example"}}
    ]


@pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx is not installed")
def test_nginx_accepts_its_config(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(nginx_config(tmp_path))

    checked = subprocess.run(
        [NGINX, "-t", "-q", "-e", "stderr", "-c", str(path)], capture_output=True, text=True
    )

    assert checked.returncode == 0, checked.stderr


def test_every_caller_bucket_is_an_nginx_zone_at_its_size(tmp_path: Path) -> None:
    limits = policy.caller_limits({"GATEWAY_RATE_LIMIT_SIGNUP_BURST": "7"})
    config = nginx.render(
        listen=("127.0.0.1", 18000),
        operator_listen=("127.0.0.1", 18100),
        upstreams=UPSTREAMS,
        state_dir=tmp_path,
        rate_limit=DEFAULT,
        caller_limits=limits,
    )
    rates = dict(re.findall(r"limit_req_zone \S+ zone=(\w+):10m rate=(\d+)r/s;", config))
    bursts = dict(re.findall(r"limit_req zone=(\w+) burst=(\d+) nodelay;", config))

    expected = {limit.name: (str(limit.rps), str(limit.burst)) for limit in limits}
    assert {name: (rates[name], bursts[name]) for name in expected} == expected
    assert bursts["signup"] == "7"
    assert (rates["per_client"], bursts["per_client"]) == (str(DEFAULT.rps), str(DEFAULT.burst))


def test_nginx_verifies_every_api_route_and_lets_anonymous_calls_through(tmp_path: Path) -> None:
    config = nginx_config(tmp_path)
    verified = re.findall(
        r"location (= )?(/api/\S*) \{\s*set \$gateway_optional (\S+);\s*auth_request ", config
    )

    assert {(path, optional) for _, path, optional in verified if optional == "0"} == {
        (r.prefix, "0") for r in ROUTES if r.prefix.startswith("/api/")
    }
    assert [path for exact, path, optional in verified if exact] == [
        call.path for call in policy.ANONYMOUS
    ]
    # Nothing else is verified at the gateway.
    assert config.count("auth_request /_gateway/auth;") == len(verified)


def test_gateways_and_services_accept_the_same_request_ids(tmp_path: Path) -> None:
    from common.api.request_id import REQUEST_ID

    assert REQUEST_ID.pattern == policy.REQUEST_ID_PATTERN
    assert f'"~^{policy.REQUEST_ID_PATTERN}$" $http_x_request_id;' in nginx_config(tmp_path)
    [lua] = [f for f in http_filters(envoy_config()) if f["name"] == "envoy.filters.http.lua"]
    assert "^[A-Za-z0-9._%-]+$" in lua["typed_config"]["default_source_code"]["inline_string"]


def test_envoy_traces_only_when_the_otel_environment_names_a_collector() -> None:
    def managers(config: dict) -> list[dict]:
        return [
            listener["filter_chains"][0]["filters"][0]["typed_config"]
            for listener in config["static_resources"]["listeners"]
        ]

    assert policy.Tracing.from_env({}) is None
    assert all("tracing" not in m for m in managers(envoy_config()))
    tracing = policy.Tracing.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.5",
        }
    )
    assert tracing is not None
    config = envoy.render(
        listen=("127.0.0.1", 8000),
        operator_listen=("127.0.0.1", 8100),
        admin=("127.0.0.1", 9901),
        upstreams=UPSTREAMS,
        tracing=tracing,
    )
    for manager in managers(config):
        assert manager["tracing"]["random_sampling"] == {"value": 50.0}
        exporter = manager["tracing"]["provider"]["typed_config"]["http_service"]["http_uri"]
        assert exporter["uri"] == "http://127.0.0.1:4318/v1/traces"
    collector = next(
        c for c in config["static_resources"]["clusters"] if c["name"] == exporter["cluster"]
    )
    endpoint = collector["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 4318}
