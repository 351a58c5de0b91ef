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

from common.messaging.routing import SERVICES
from deploy.gateway.routes import Listener, routes_of
from deploy.k8s import generate, manifests, mesh, render
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
