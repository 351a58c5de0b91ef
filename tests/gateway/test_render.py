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
from deploy.gateway.routes import FLOWER, ROUTES
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
        admin=("127.0.0.1", 19901),
        upstreams=UPSTREAMS,
        rate_limit=limit,
    )


def nginx_config(state: Path) -> str:
    return nginx.render(
        listen=("127.0.0.1", 18000),
        upstreams=UPSTREAMS,
        state_dir=state,
        rate_limit=DEFAULT,
    )


def envoy_routes(config: dict) -> list[dict]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]


def test_both_gateways_have_every_route_of_the_table(tmp_path: Path) -> None:
    table = {(r.prefix, r.upstream, f"{r.timeout_s:g}s") for r in ROUTES}
    routed = {
        (r["match"]["prefix"], r["route"]["cluster"], r["route"]["timeout"])
        for r in envoy_routes(envoy_config())
        if "route" in r
    }
    located = set(
        re.findall(
            r"location (/\S*) \{.*?proxy_pass http://(\w+);\s*proxy_read_timeout (\S+);",
            nginx_config(tmp_path),
            re.S,
        )
    )

    assert routed == table
    assert located == table
    assert {r.upstream for r in ROUTES} == set(UPSTREAMS)


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


def test_the_envoy_bucket_refills_smoothly_at_the_given_rate() -> None:
    for limit in (policy.RateLimit(1000, 2000), policy.RateLimit(7, 9), policy.RateLimit(30, 5)):
        manager = envoy_config(limit)["static_resources"]["listeners"][0]["filter_chains"][0]
        ratelimit = manager["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
        bucket = ratelimit["descriptors"][0]["token_bucket"]
        per_second = bucket["tokens_per_fill"] / float(bucket["fill_interval"].rstrip("s"))

        assert (per_second, bucket["max_tokens"]) == (limit.rps, limit.burst)


def test_envoy_accepts_its_config(tmp_path: Path) -> None:
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(envoy_config()))
    envoy_bin = Path(sys.executable).parent / "envoy"

    checked = subprocess.run(
        [str(envoy_bin), "--mode", "validate", "-c", str(path)], capture_output=True, text=True
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx is not installed")
def test_nginx_accepts_its_config(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text(nginx_config(tmp_path))

    checked = subprocess.run(
        [NGINX, "-t", "-q", "-e", "stderr", "-c", str(path)], capture_output=True, text=True
    )

    assert checked.returncode == 0, checked.stderr
