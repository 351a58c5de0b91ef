"""The Kubernetes + Istio manifests: valid offline, and saying what DESIGN.md §3 and §7 say.

Needs kubectl (machine image) and the dev dependencies kubernetes-validate and check-jsonschema;
no cluster and no network.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.messaging import redis_acl
from common.messaging.routing import SERVICES
from deploy.gateway import policy
from deploy.gateway.routes import Listener, routes_of
from deploy.k8s import generate, manifests, mesh, redis, render, security
from deploy.monitoring import generate as monitoring

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "k8s" / "overlays" / "local"

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render.objects(render.build(LOCAL))


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    (found,) = find(objects, kind, name)
    return found


def pod_specs(objects: list[Obj]) -> Iterator[tuple[str, Obj]]:
    for o in objects:
        if o["kind"] in {"Deployment", "Job"}:
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


# --- validation ------------------------------------------------------------------------------


def test_generated_files_match_their_generators() -> None:
    assert generate.stale() == []
    assert monitoring.stale() == []


def test_validate_sh_passes() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "k8s" / "validate.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "k8s manifests: ok" in result.stdout


def test_kubernetes_validate_rejects_an_unknown_field(objects: list[Obj], tmp_path: Path) -> None:
    """Guards the guard: --strict really refuses what an API server would."""
    web = copy.deepcopy(one(objects, "Deployment", "customer-web"))
    web["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(web))
    result = run(render.tool("kubernetes-validate"), "--strict", "--quiet", str(bad))
    assert result.returncode != 0
    assert "readinesProbe" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("kind", "name", "spoil"),
    [
        ("VirtualService", "cafe", lambda s: s["http"][0].update(timout="15s")),
        ("VirtualService", "cafe", lambda s: s["http"][0].update(timeout="15")),
        ("VirtualService", "cafe", lambda s: s["http"][0]["retries"].update(retryOn="5xxx")),
        ("DestinationRule", "order-web", lambda s: s["trafficPolicy"]["tls"].update(mode="ON")),
        ("ScaledObject", "order-worker", lambda s: s["triggers"][0]["metadata"].pop("listName")),
        ("PeerAuthentication", "default", lambda s: s["mtls"].update(mode="strict")),
        ("Gateway", "cafe-gateway", lambda s: s["servers"][0].pop("hosts")),
        ("AuthorizationPolicy", "customer-web", lambda s: s.update(action="allow")),
        ("AuthorizationPolicy", "cafe-require-token", lambda s: s["rules"][0].update(form=[])),
        ("RequestAuthentication", "cafe-tokens", lambda s: s["jwtRules"][0].update(jwksUrl="x")),
        ("EnvoyFilter", "cafe-edge", lambda s: s["configPatches"][0].update(applyTo="FILTERS")),
        ("Certificate", "cafe-gateway-tls", lambda s: s.pop("secretName")),
        ("Issuer", "cafe-self-signed", lambda s: s.update(selfsigned={})),
    ],
)
def test_schemas_reject_a_spoiled_object(
    objects: list[Obj], tmp_path: Path, kind: str, name: str, spoil: Any
) -> None:
    obj = copy.deepcopy(one(objects, kind, name))
    spoil(obj["spec"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(obj))
    schema = render.SCHEMAS / f"{render.CUSTOM_KINDS[kind]}.json"
    assert run(render.tool("check-jsonschema"), "--schemafile", str(schema), str(bad)).returncode
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(one(objects, kind, name)))
    assert (
        run(render.tool("check-jsonschema"), "--schemafile", str(schema), str(good)).returncode == 0
    )


# --- what the manifests say ------------------------------------------------------------------


def test_every_service_has_its_processes_and_migration(objects: list[Obj]) -> None:
    deployments = {d["metadata"]["name"] for d in find(objects, "Deployment")}
    for service in SERVICES:
        assert {f"{service}-web", f"{service}-worker", f"{service}-relay"} <= deployments
        job = one(objects, "Job", f"{service}-migrate")
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args == ["python", "manage.py", "bootstrap", f"--settings={service}.settings"]
    assert {"orchestrator-beat", "flower"} <= deployments


def test_workers_consume_only_their_own_queue_and_scale_on_its_length(objects: list[Obj]) -> None:
    config = next(
        c for c in find(objects, "ConfigMap") if c["metadata"]["name"].startswith("cafe-config")
    )
    for service in SERVICES:
        worker = one(objects, "Deployment", f"{service}-worker")
        args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--queues") + 1] == service
        assert "replicas" not in worker["spec"]  # KEDA owns it
        scaler = one(objects, "ScaledObject", f"{service}-worker")
        assert scaler["spec"]["scaleTargetRef"]["name"] == f"{service}-worker"
        (trigger,) = scaler["spec"]["triggers"]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == service
        assert trigger["metadata"]["addressFromEnv"] in config["data"]


def test_exactly_one_beat_even_during_a_rollout(objects: list[Obj]) -> None:
    beats = [d for d in find(objects, "Deployment") if "beat" in d["metadata"]["name"]]
    assert [b["metadata"]["name"] for b in beats] == ["orchestrator-beat"]
    assert beats[0]["spec"]["replicas"] == 1
    assert beats[0]["spec"]["strategy"] == {"type": "Recreate"}


def test_every_container_runs_as_non_root_on_a_read_only_root(objects: list[Obj]) -> None:
    for name, spec in pod_specs(objects):
        pod_context = spec.get("securityContext", {})
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            context = pod_context | c.get("securityContext", {})
            assert context.get("runAsNonRoot") is True, (name, c["name"])
            assert context.get("runAsUser", 1) != 0, (name, c["name"])
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert {"requests", "limits"} <= c["resources"].keys(), (name, c["name"])


def test_every_web_is_probed_served_and_protected_from_disruption(objects: list[Obj]) -> None:
    for service in SERVICES:
        name = f"{service}-web"
        web = one(objects, "Deployment", name)["spec"]["template"]
        (container,) = web["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == f"/{service}/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == f"/{service}/healthz"
        assert web["metadata"]["annotations"]["prometheus.io/path"] == f"/{service}/metrics"
        assert one(objects, "Service", name)["spec"]["selector"] == {"app": name}
        pdb = one(objects, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"] == {"app": name}
        assert one(objects, "DestinationRule", name)["spec"]["host"] == name


def test_virtual_service_routes_are_the_gateway_route_table(objects: list[Obj]) -> None:
    (vs,) = find(objects, "VirtualService")
    *forwarding, fallback = vs["spec"]["http"]
    seen = [
        (
            r["match"][-1]["uri"]["prefix"],
            r["route"][0]["destination"]["host"],
            r["timeout"],
            r["retries"]["attempts"] > 0,
        )
        for r in forwarding
    ]
    expected = [
        (route.prefix, mesh.upstream_host(route.upstream), f"{route.timeout_s:g}s", retried)
        for route in routes_of(Listener.PUBLIC)
        for retried in (True, False)
    ]
    assert seen == expected
    assert fallback["directResponse"]["status"] == 404
    hosts = {s["metadata"]["name"] for s in find(objects, "Service")}
    assert {host for _, host, _, _ in seen} <= hosts


def test_only_idempotent_requests_are_retried(objects: list[Obj]) -> None:
    (vs,) = find(objects, "VirtualService")
    for route in vs["spec"]["http"][:-1]:
        if route["retries"]["attempts"]:
            methods = [m["method"] for m in route["match"]]
            assert methods == [{"regex": "GET|HEAD"}, {"exact": "POST"}]
            assert route["match"][1]["headers"] == {"idempotency-key": {"regex": ".+"}}


def test_mutual_tls_is_strict_for_the_whole_namespace(objects: list[Obj]) -> None:
    (peer,) = find(objects, "PeerAuthentication")
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}
    assert peer["metadata"]["namespace"] == "cafe"


def test_every_referenced_config_and_secret_exists(objects: list[Obj]) -> None:
    """kustomize renames generated ConfigMaps and Secrets; every reference must follow. The
    message keys are made by the operator, outside kustomize, under fixed names."""
    names = {o["metadata"]["name"] for o in objects if o["kind"] in {"ConfigMap", "Secret"}}
    names |= {
        "postgres-init",
        manifests.VERIFY_KEYS,
        manifests.TOKEN_KEYS,
        *(manifests.signing_secret(s) for s in SERVICES),
    }
    for pod, spec in pod_specs(objects):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            refs = [next(iter(source.values()))["name"] for source in c.get("envFrom", [])]
            refs += [
                next(iter(e["valueFrom"].values()))["name"]
                for e in c.get("env", [])
                if "valueFrom" in e
            ]
            assert set(refs) <= names, (pod, c["name"])
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in names, pod
            if "secret" in volume:
                assert volume["secret"]["secretName"] in names, pod


# --- monitoring ------------------------------------------------------------------------------


def test_local_prometheus_scrapes_every_service_and_the_envoy_gateway() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "monitoring" / "prometheus-local.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    paths = {s["labels"]["__metrics_path__"] for s in jobs["cafe"]["static_configs"]}
    assert paths == {f"/{service}/metrics" for service in SERVICES}
    assert jobs["envoy"]["metrics_path"] == "/stats/prometheus"


def test_dashboard_shows_outbox_sagas_queues_and_dead_letters() -> None:
    board = json.loads((ROOT / "deploy" / "monitoring" / "grafana" / "cafe.json").read_text())
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    for metric in (
        "outbox_pending",
        "outbox_oldest_pending_age_seconds",
        "outbox_commit_to_publish_seconds_bucket",
        "sagas_started_total",
        "sagas_finished_total",
        "saga_duration_seconds_bucket",
        "sagas_in_flight",
        "sagas_overdue",
        "sagas_failed",
        "inbox_queue_depth",
        "sagas_in_flight_oldest_age_seconds",
        "inbox_dead_letters_total",
    ):
        assert metric in exprs, metric
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_web_and_worker_pods_get_their_own_signing_key_only(objects: list[Obj]) -> None:
    for pod, spec in pod_specs(objects):
        secrets = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        service, _, kind = pod.rpartition("-")
        if kind in {"web", "worker"}:
            # The customer web pods alone also sign access tokens.
            tokens = {manifests.TOKEN_KEYS} if pod == "customer-web" else set()
            assert secrets == {manifests.signing_secret(service), *tokens}, pod
        else:
            assert not secrets, pod


def test_traces_go_to_one_configurable_collector_from_the_mesh_and_the_apps(
    objects: list[Obj],
) -> None:
    from deploy.k8s.generate import CONFIG_DEFAULTS
    from deploy.k8s.mesh import TRACING_PROVIDER

    (tracing,) = one(objects, "Telemetry", "cafe-tracing")["spec"]["tracing"]
    assert tracing["providers"] == [{"name": TRACING_PROVIDER}]
    # Off until an overlay names the collector; over OTLP/HTTP, the one exporter installed.
    assert CONFIG_DEFAULTS["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""
    assert CONFIG_DEFAULTS["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"


# --- least privilege -------------------------------------------------------------------------

OWNER_OF_KIND = {"web", "worker", "relay", "migrate", "beat"}


def owner_of(pod: str) -> str:
    if pod == "flower":
        return "flower"
    service, _, kind = pod.rpartition("-")
    assert kind in OWNER_OF_KIND, pod
    return service


def secret_refs(spec: Obj) -> set[str]:
    refs = set()
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        refs |= {s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s}
        refs |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
    refs |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    return refs


def generated_name(objects: list[Obj], kind: str, prefix: str) -> str:
    """kustomize's name for a generated ConfigMap or Secret (a hash suffix added)."""
    (name,) = [
        o["metadata"]["name"]
        for o in find(objects, kind)
        if o["metadata"]["name"].rsplit("-", 1)[0] == prefix
    ]
    return name


def test_each_app_pod_runs_as_its_own_account_and_reads_only_its_own_secrets(
    objects: list[Obj],
) -> None:
    accounts = {o["metadata"]["name"]: o for o in find(objects, "ServiceAccount")}
    assert set(accounts) == set(manifests.OWNERS)
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    for pod, spec in pod_specs(objects):
        if pod in {"postgres", "redis"}:
            continue
        owner = owner_of(pod)
        assert spec["serviceAccountName"] == owner, pod
        assert spec["automountServiceAccountToken"] is False, pod
        own = {generated_name(objects, "Secret", manifests.owner_secret(owner))}
        if owner in SERVICES:
            own.add(manifests.signing_secret(owner))
        if pod == "customer-web":
            own.add(manifests.TOKEN_KEYS)
        assert secret_refs(spec) <= own, pod
        assert generated_name(objects, "Secret", manifests.owner_secret(owner)) in secret_refs(
            spec
        ), pod


def test_each_secret_holds_its_owners_things_only(objects: list[Obj]) -> None:
    for owner in manifests.OWNERS:
        secret = one(objects, "Secret", generated_name(objects, "Secret", owner + "-secrets"))
        assert set(secret["data"]) == set(manifests.secret_keys(owner)), owner
    # The token signing keys: the customer service's only.
    assert "customer" in manifests.TOKEN_KEYS


def test_no_url_is_written_without_its_owners_credentials(objects: list[Obj]) -> None:
    config = one(objects, "ConfigMap", generated_name(objects, "ConfigMap", manifests.CONFIG))
    assert not any("redis://" in v or "postgres://" in v for v in config["data"].values())
    assert "DATABASE_USER" not in config["data"]
    for pod, spec in pod_specs(objects):
        if pod in {"postgres", "redis"}:
            continue
        owner = owner_of(pod)
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            if not c.get("envFrom"):
                continue  # the metrics exporter: no broker, no database
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["REDIS_USERNAME"] == owner, (pod, c["name"])
            assert env["REDIS_URL"] == (
                "redis://$(REDIS_USERNAME):$(REDIS_PASSWORD)@$(REDIS_ADDRESS)/0"
            )
            urls = {k for k in env if k.endswith("_DATABASE_URL")}
            if owner == "flower":
                assert not urls, pod
            else:
                assert urls == {f"{owner.upper()}_DATABASE_URL"}, (pod, c["name"])
                assert env[f"{owner.upper()}_DATABASE_URL"].startswith(
                    f"postgres://{owner}:$(DATABASE_PASSWORD)@"
                )


def test_keda_logs_in_as_the_worker(objects: list[Obj]) -> None:
    for service in SERVICES:
        (trigger,) = one(objects, "ScaledObject", f"{service}-worker")["spec"]["triggers"]
        assert trigger["metadata"]["usernameFromEnv"] == "REDIS_USERNAME"
        assert trigger["metadata"]["passwordFromEnv"] == "REDIS_PASSWORD"


def init_script(objects: list[Obj]) -> str:
    (script,) = one(objects, "ConfigMap", "postgres-init")["data"].values()
    return script


def test_postgres_roles_are_per_service_and_never_superuser(objects: list[Obj]) -> None:
    script = init_script(objects)
    assert "for service in " + " ".join(SERVICES) + ";" in script
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS" in script
    assert 'CREATE DATABASE :"service" OWNER :"service";' in script
    assert 'REVOKE ALL ON DATABASE :"service" FROM PUBLIC;' in script
    postgres = one(objects, "Deployment", "postgres")["spec"]["template"]["spec"]
    (container,) = postgres["containers"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    for service in SERVICES:
        ref = refs[f"{service.upper()}_DB_PASSWORD"]
        assert ref["name"] == generated_name(objects, "Secret", f"{service}-secrets")
        assert ref["key"] == "DATABASE_PASSWORD"
    assert refs["POSTGRES_PASSWORD"]["name"] == generated_name(
        objects, "Secret", "postgres-secrets"
    )
    # No app pod has the superuser's password.
    superuser = refs["POSTGRES_PASSWORD"]["name"]
    for pod, spec in pod_specs(objects):
        if pod != "postgres":
            assert superuser not in secret_refs(spec), pod


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, int]]:
    """A private PostgreSQL server on 127.0.0.1 (superuser `postgres`, trust auth), as the local
    stack starts one (deploy.local.backing: as the postgres user when run as root)."""
    import shutil
    import tempfile

    from deploy.local import backing

    data = Path(tempfile.mkdtemp(prefix="k8s-pg-"))
    data.chmod(0o755)  # the postgres user (when run as root) must reach its directory
    port = free_port()
    backing.start_private_postgres(data / "data", port)
    try:
        yield "127.0.0.1", port
    finally:
        backing.postgres_ctl(data / "data", port, "stop", "-m", "immediate")
        shutil.rmtree(data, ignore_errors=True)


def test_postgres_init_script_creates_roles_that_reach_only_their_own_database(
    objects: list[Obj], tmp_path: Path, private_postgres: tuple[str, int]
) -> None:
    """The ConfigMap's script, run as the postgres image runs it, against a real server."""
    sock, port = private_postgres
    script = tmp_path / "init.sh"
    script.write_text(init_script(objects))
    env = {
        **os.environ,
        "POSTGRES_USER": "postgres",
        "PGHOST": str(sock),
        "PGPORT": str(port),
        **{f"{s.upper()}_DB_PASSWORD": f"pw-{s}" for s in SERVICES},
    }
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    def sql(query: str, user: str = "postgres", db: str = "postgres") -> str:
        out = subprocess.run(
            ["psql", "-XAtq", "-U", user, "-d", db, "-c", query],
            env={**env, "PGPASSWORD": ""},
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() + out.stderr.strip()

    roles = sql(
        "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
        "WHERE rolname = ANY(ARRAY['customer','account','order','orchestrator']) ORDER BY 1"
    )
    assert roles.splitlines() == sorted(f"{s}|f|f|f" for s in SERVICES)
    for service in SERVICES:
        assert (
            sql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{service}'")  # noqa: S608 — the four service names
            == service
        )
        for other in SERVICES:
            allowed = sql(f"SELECT has_database_privilege('{other}', '{service}', 'CONNECT')")
            assert allowed == ("t" if other == service else "f"), (other, service)


@pytest.fixture
def redis_acl_file(objects: list[Obj], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (script,) = one(objects, "ConfigMap", "redis-acl")["data"].values()
    (tmp_path / "write.sh").write_text(script)
    passwords = {o: f"pw-{o}-{os.getpid()}" for o in manifests.OWNERS}
    env = {**os.environ, **{redis.password_variable(o): p for o, p in passwords.items()}}
    env["ORDER_REDIS_PASSWORD_PREVIOUS"] = "the-old-one"
    out = tmp_path / "users.acl"
    result = subprocess.run(
        ["sh", str(tmp_path / "write.sh"), str(out)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return out, passwords


def test_redis_aclfile_is_the_one_redis_acl_writes(
    redis_acl_file: tuple[Path, dict[str, str]],
) -> None:
    path, passwords = redis_acl_file
    given: dict[str, list[str]] = {o: [p] for o, p in passwords.items()}
    given["order"].append("the-old-one")
    expected = redis_acl.acl_lines(given, db=redis.REDIS_DB)
    assert [line.split() for line in path.read_text().splitlines()] == [e.split() for e in expected]


def test_redis_aclfile_refuses_to_be_written_without_every_password(
    objects: list[Obj], tmp_path: Path
) -> None:
    (script,) = one(objects, "ConfigMap", "redis-acl")["data"].values()
    (tmp_path / "write.sh").write_text(script)
    env = {**os.environ, **{redis.password_variable(o): "x" for o in manifests.OWNERS}}
    env[redis.password_variable("flower")] = ""
    result = subprocess.run(
        ["sh", str(tmp_path / "write.sh"), str(tmp_path / "acl")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert not (tmp_path / "acl").exists()


def test_redis_pod_logs_in_every_owner_from_its_own_secret(objects: list[Obj]) -> None:
    spec = one(objects, "Deployment", "redis")["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    expected = copy.deepcopy(redis.password_env())
    for e in expected:
        ref = e["valueFrom"]["secretKeyRef"]
        ref["name"] = generated_name(objects, "Secret", ref["name"])
    assert init["env"] == expected
    (main,) = spec["containers"]
    assert main["args"][main["args"].index("--aclfile") + 1] == redis.ACL_FILE


def test_redis_refuses_other_queues_and_flushall_with_the_generated_aclfile(
    redis_acl_file: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A real redis-server with the aclfile: each service's login, and nothing more."""
    import redis as redis_client

    path, passwords = redis_acl_file
    sock = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--aclfile",
            str(path),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        import time

        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)

        def login(user: str, password: str) -> redis_client.Redis:
            return redis_client.Redis(unix_socket_path=str(sock), username=user, password=password)

        with pytest.raises(redis_client.AuthenticationError):
            redis_client.Redis(unix_socket_path=str(sock)).ping()
        order = login("order", passwords["order"])
        assert order.lpush("order", "x") == 1
        assert login("order", "the-old-one").llen("order") == 1
        with pytest.raises(redis_client.exceptions.NoPermissionError):
            order.lpop("customer")
        with pytest.raises(redis_client.exceptions.NoPermissionError):
            order.flushall()
        with pytest.raises(redis_client.AuthenticationError):
            login("customer", passwords["order"]).ping()
    finally:
        server.terminate()
        server.wait(10)


# --- who may talk to whom --------------------------------------------------------------------


def test_every_authorization_principal_is_a_service_account(objects: list[Obj]) -> None:
    accounts = {
        f"cluster.local/ns/{a['metadata']['namespace']}/sa/{a['metadata']['name']}"
        for a in find(objects, "ServiceAccount")
    }
    principals = {
        p
        for ap in find(objects, "AuthorizationPolicy")
        for rule in ap["spec"].get("rules", [])
        for source in rule.get("from", [])
        for p in source["source"].get("principals", [])
    }
    assert principals
    assert principals - {security.INGRESS_PRINCIPAL} <= accounts


def test_the_namespace_allows_nothing_but_the_architectures_calls(objects: list[Obj]) -> None:
    policies = {
        ap["metadata"]["name"]: ap["spec"]
        for ap in find(objects, "AuthorizationPolicy")
        if ap["metadata"]["namespace"] == "cafe"
    }
    assert policies.pop("allow-nothing") == {}
    assert set(policies) == {f"{s}-web" for s in SERVICES}
    for service in SERVICES:
        spec = policies[f"{service}-web"]
        assert spec["action"] == "ALLOW"
        assert spec["selector"] == {"matchLabels": {"app": f"{service}-web"}}
        gateway, *others = spec["rules"]
        assert gateway["from"] == [{"source": {"principals": [security.INGRESS_PRINCIPAL]}}]
        (to,) = gateway["to"]
        public = [f"{r.prefix}*" for r in routes_of(Listener.PUBLIC, {service})]
        assert to["operation"]["paths"] == public
        # The operator surfaces never through the public gateway.
        for route in routes_of(Listener.OPERATOR, {service}):
            if Listener.PUBLIC not in route.listeners:
                assert not any(route.prefix.startswith(p.rstrip("*")) for p in public), route
        if service == "customer":
            (jwks,) = others
            assert jwks["to"][0]["operation"] == {
                "ports": ["8000"],
                "methods": ["GET"],
                "paths": [policy.JWKS_PATH],
            }
        else:
            assert others == []


def test_the_ingress_gateway_verifies_tokens_except_on_the_anonymous_routes(
    objects: list[Obj],
) -> None:
    from deploy.k8s.generate import CONFIG_DEFAULTS

    (auth,) = find(objects, "RequestAuthentication")
    assert auth["metadata"]["namespace"] == "istio-system"
    (rule,) = auth["spec"]["jwtRules"]
    assert rule["issuer"] == CONFIG_DEFAULTS["TOKEN_ISSUER"] == CONFIG_DEFAULTS["OIDC_ISSUER"]
    assert rule["jwksUri"].endswith(":8000" + policy.JWKS_PATH)
    assert rule["forwardOriginalToken"] is True
    deny = one(objects, "AuthorizationPolicy", "cafe-require-token")["spec"]
    assert deny["action"] == "DENY"
    (rule,) = deny["rules"]
    assert rule["from"] == [{"source": {"notRequestPrincipals": ["*"]}}]
    first, *per_call = [t["operation"] for t in rule["to"]]
    assert first == {"paths": ["/api/*"], "notPaths": [a.path for a in policy.ANONYMOUS]}
    # Exactly the local gateways' anonymous calls: (methods, path) pairs.
    anonymous = {(tuple(op["notMethods"]), op["paths"][0]) for op in per_call}
    assert anonymous == {(a.methods, a.path) for a in policy.ANONYMOUS}


def _protected(objects: list[Obj], method: str, path: str) -> bool:
    """Whether the DENY policy refuses a token-less request, by Istio's matching rules."""
    (rule,) = one(objects, "AuthorizationPolicy", "cafe-require-token")["spec"]["rules"]

    def match(patterns: list[str]) -> bool:
        return any(path.startswith(p[:-1]) if p.endswith("*") else path == p for p in patterns)

    for to in rule["to"]:
        op = to["operation"]
        if (
            match(op["paths"])
            and not match(op.get("notPaths", []))
            and method not in op.get("notMethods", [])
        ):
            return True
    return False


def test_every_api_route_needs_a_token_but_the_anonymous_calls(objects: list[Obj]) -> None:
    for route in routes_of(Listener.PUBLIC):
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            for path in (route.prefix, route.prefix.rstrip("/") + "/1"):
                anonymous = any(a.path == path and method in a.methods for a in policy.ANONYMOUS)
                needs = path.startswith(policy.PROTECTED_PREFIX) and not anonymous
                assert _protected(objects, method, path) == needs, (method, path)


def test_gateway_terminates_tls_and_redirects_plain_http(objects: list[Obj]) -> None:
    https, http = one(objects, "Gateway", "cafe-gateway")["spec"]["servers"]
    assert https["port"]["protocol"] == "HTTPS"
    assert https["tls"]["mode"] == "SIMPLE"
    assert http["tls"] == {"httpsRedirect": True}
    cert = one(objects, "Certificate", "cafe-gateway-tls")
    assert cert["spec"]["secretName"] == https["tls"]["credentialName"] == security.TLS_SECRET
    assert cert["metadata"]["namespace"] == "istio-system"
    issuer = cert["spec"]["issuerRef"]
    assert one(objects, issuer["kind"], issuer["name"])["metadata"]["namespace"] == "istio-system"


def test_edge_filters_carry_the_local_gateways_limits(objects: list[Obj]) -> None:
    patches = one(objects, "EnvoyFilter", "cafe-edge")["spec"]["configPatches"]
    values = {p["patch"]["value"]["name"]: p["patch"]["value"] for p in patches}
    buffer = values["envoy.filters.http.buffer"]["typed_config"]
    assert buffer["max_request_bytes"] == policy.MAX_BODY_BYTES
    limits = [
        p["patch"]["value"] for p in patches if "local_ratelimit" in p["patch"]["value"]["name"]
    ]
    per_client, per_caller = (v["typed_config"] for v in limits)
    assert per_client["token_bucket"]["max_tokens"] == policy.RateLimit().burst
    assert len(per_caller["descriptors"]) >= len(policy.CALLER_LIMITS)
    # The caller headers go before Istio's own jwt filter sets them.
    assert patches[0]["patch"]["operation"] == "INSERT_FIRST"
    assert patches[0]["patch"]["value"]["name"] == "envoy.filters.http.header_mutation"


def netpol_peers(objects: list[Obj], name: str) -> list[Obj]:
    return one(objects, "NetworkPolicy", name)["spec"]["ingress"]


def test_network_policies_deny_by_default_and_admit_only_the_app_to_the_data_stores(
    objects: list[Obj],
) -> None:
    default = one(objects, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert default == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}
    for store, port, owners in (
        ("postgres", 5432, list(SERVICES)),
        ("redis", 6379, [*SERVICES, "flower"]),
    ):
        spec = one(objects, "NetworkPolicy", store)["spec"]
        assert spec["podSelector"] == {"matchLabels": {"app": store}}
        assert spec["egress"] == []
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        apps, *others = rule["from"]
        (expr,) = apps["podSelector"]["matchExpressions"]
        assert expr == {"key": "app.kubernetes.io/name", "operator": "In", "values": owners}
        assert [o["podSelector"]["matchLabels"] for o in others] == (
            [security.KEDA_LABELS] if store == "redis" else []
        )
        # The store's pods carry the label the policy selects.
        labels = one(objects, "Deployment", store)["spec"]["template"]["metadata"]["labels"]
        assert labels["app"] == store
    for service in SERVICES:
        web, prometheus = netpol_peers(objects, f"{service}-web")
        assert web["ports"] == [{"protocol": "TCP", "port": manifests.WEB_PORT}]
        assert web["from"][0]["podSelector"] == {"matchLabels": security.INGRESS_LABELS}
        assert len(web["from"]) == (2 if service == "customer" else 1)
        assert prometheus["ports"] == [{"protocol": "TCP", "port": security.AGENT_PORT}]
