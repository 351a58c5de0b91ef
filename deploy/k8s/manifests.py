"""The Kubernetes objects of DESIGN.md §3: per service a web, worker and relay Deployment and a
migration Job; the orchestrator's one beat; Flower. Commands come from deploy/local/processes.py
so the cluster runs exactly what ``make up`` runs."""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath
from typing import Any

from common.messaging.routing import SERVICES
from deploy.gateway.routes import FLOWER
from deploy.local import processes

Obj = dict[str, Any]

IMAGE = "cafe/backend:latest"
WEB_PORT = 8000
METRICS_PORT = 9100
FLOWER_PORT = 5555
UID = 10001  # the image's non-root user (deploy/docker/Dockerfile)
CONFIG = "cafe-config"
EXPORTER = "cafe-metrics-exporter"
MULTIPROC_DIR = "/var/run/prometheus"
READY_FILE = "/tmp/ready"  # noqa: S108 — an emptyDir of the pod's own
EXPORTER_SCRIPT = "/etc/cafe/metrics_exporter.py"
# Message signing (common.messaging.keys): each service's private key in a Secret of its own,
# every service's public key in one ConfigMap. Both are made outside the base (README, "Message
# signing keys"): a pod that lacks them does not start, rather than run with made-up keys.
SIGNING_KEYS_DIR = "/run/secrets/message-signing"
VERIFY_KEYS_DIR = "/etc/cafe/message-keys"
VERIFY_KEYS = "message-verify-keys"


# The bundled identity provider's token signing keys (common.auth.keys): a Secret of the customer
# web pods alone, made outside the base like the message keys (README, "Identity and access").
TOKEN_KEYS_DIR = "/run/secrets/token-keys"  # noqa: S105 — a path, not a secret
TOKEN_KEYS = "customer-token-keys"  # noqa: S105 — a Secret's name


def signing_secret(service: str) -> str:
    return f"{service}-message-key"


# Who owns a pod: one of the four services, or Flower. Each owner has a ServiceAccount (Istio's
# mTLS identity, which the AuthorizationPolicies name) and a Secret of its own, and a pod gets
# its owner's and no other's.
OWNERS = (*SERVICES, FLOWER)
# The keys of an owner's Secret (the overlay provides the values, README "Kubernetes"). Passwords
# go into URLs below, so they must be URL-safe (e.g. `openssl rand -hex 32`).
SERVICE_SECRET_KEYS = ("SECRET_KEY", "DATABASE_PASSWORD", "REDIS_PASSWORD", "ADMIN_PASSWORD")
FLOWER_SECRET_KEYS = ("SECRET_KEY", "REDIS_PASSWORD", "FLOWER_BASIC_AUTH")


def secret_keys(owner: str) -> tuple[str, ...]:
    return FLOWER_SECRET_KEYS if owner == FLOWER else SERVICE_SECRET_KEYS


def owner_secret(owner: str) -> str:
    """The Secret holding ``owner``'s passwords and Django SECRET_KEY."""
    return f"{owner}-secrets"


def service_account_name(owner: str) -> str:
    return owner


def service_account(owner: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": service_account_name(owner)},
        # An identity for mTLS only: the apps never call the Kubernetes API.
        "automountServiceAccountToken": False,
    }


def redis_user(owner: str) -> str:
    """The Redis ACL user ``owner`` logs in as."""
    return owner


def name_labels(name: str, service: str, component: str) -> dict[str, str]:
    # `app` is what Istio's telemetry names a workload by; the others are the recommended labels.
    return {
        "app": name,
        "app.kubernetes.io/name": service,
        "app.kubernetes.io/component": component,
    }


def in_image(command: str) -> list[str]:
    """A command of deploy/local/processes.py as the image runs it: programs from its PATH."""
    argv = shlex.split(command)
    return [PurePosixPath(argv[0]).name, *argv[1:]]


def _without_option(argv: list[str], option: str) -> list[str]:
    at = argv.index(option)
    return [*argv[:at], *argv[at + 2 :]]


def web_args(service: str) -> list[str]:
    argv = in_image(processes.web_command("/", service, f"0.0.0.0:{WEB_PORT}"))
    # The proxy in front is the Istio sidecar, not a local gateway on 127.0.0.1: gunicorn reads
    # FORWARDED_ALLOW_IPS from the ConfigMap instead, as Django does.
    argv = _without_option(argv, "--forwarded-allow-ips")
    # Longer than the sidecar keeps an idle connection to the app (the DestinationRule's
    # idleTimeout, which Istio applies to the inbound side too), so gunicorn never closes one
    # under a request the sidecar is about to send.
    return [*argv, "--keep-alive", "75"]


def security_context() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Obj:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def env(owner: str, *extra: tuple[str, str]) -> list[Obj]:
    """The URLs ``owner`` connects with, composed from the ConfigMap's addresses and the
    passwords in its own Secret (both come in through envFrom, so `$(…)` expands them): one
    password serves the URL and KEDA's Redis scaler alike, and no URL is written down twice."""
    pairs = [
        ("REDIS_USERNAME", redis_user(owner)),
        ("REDIS_URL", "redis://$(REDIS_USERNAME):$(REDIS_PASSWORD)@$(REDIS_ADDRESS)/0"),
    ]
    if owner in SERVICES:
        # Its own login role, which owns its own database and no other.
        pairs.append(
            (
                f"{owner.upper()}_DATABASE_URL",
                f"postgres://{owner}:$(DATABASE_PASSWORD)@$(DATABASE_HOST):$(DATABASE_PORT)/{owner}",
            )
        )
    pairs += [("PROMETHEUS_MULTIPROC_DIR", MULTIPROC_DIR), *extra]
    return [{"name": k, "value": v} for k, v in pairs]


def container(owner: str, name: str, args: list[str], res: Obj, *extra_env: tuple[str, str]) -> Obj:
    return {
        "name": name,
        "image": IMAGE,
        # Overlays pin an immutable tag (`images:`); a locally built image is never pulled.
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "envFrom": [
            {"configMapRef": {"name": CONFIG}},
            {"secretRef": {"name": owner_secret(owner)}},
        ],
        "env": env(owner, *extra_env),
        "resources": res,
        "securityContext": security_context(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 — gunicorn heartbeats, beat schedule
            {"name": "metrics", "mountPath": MULTIPROC_DIR},
        ],
    }


def with_message_keys(template: Obj, service: str) -> Obj:
    """Give the pod's first container this service's signing key and everyone's public keys
    (the web and worker sign and verify; the relay only forwards what is signed already)."""
    spec = template["spec"]
    spec["volumes"] += [
        # 0440 and the pod's fsGroup: readable by the app's user, by no other.
        {
            "name": "message-signing",
            "secret": {"secretName": signing_secret(service), "defaultMode": 0o440},
        },
        {"name": "message-verify", "configMap": {"name": VERIFY_KEYS}},
    ]
    spec["containers"][0]["volumeMounts"] += [
        {"name": "message-signing", "mountPath": SIGNING_KEYS_DIR, "readOnly": True},
        {"name": "message-verify", "mountPath": VERIFY_KEYS_DIR, "readOnly": True},
    ]
    return template


def with_token_keys(template: Obj) -> Obj:
    """The customer web pod signs access tokens: it alone mounts the token keys."""
    spec = template["spec"]
    spec["volumes"].append(
        {"name": "token-keys", "secret": {"secretName": TOKEN_KEYS, "defaultMode": 0o440}}
    )
    main = spec["containers"][0]
    main["volumeMounts"].append(
        {"name": "token-keys", "mountPath": TOKEN_KEYS_DIR, "readOnly": True}
    )
    main["env"].append({"name": "TOKEN_KEYS_DIR", "value": TOKEN_KEYS_DIR})
    return template


def wait_for_migrations(service: str) -> Obj:
    """Start a process only once the migration Job has migrated its database: a new image never
    runs against the old schema. Fails (and is retried with backoff) until then."""
    return container(
        service,
        "migrated",
        ["python", "manage.py", "migrate", "--check", f"--settings={service}.settings"],
        resources("50m", "128Mi", "500m", "256Mi"),
    )


def exporter() -> Obj:
    """Workers and relays have no HTTP server: this sums the metric files they write into the
    pod's shared directory and serves them, as the web's /metrics does for its own pod."""
    return {
        "name": "metrics",
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["python", EXPORTER_SCRIPT],
        "env": [
            {"name": "PROMETHEUS_MULTIPROC_DIR", "value": MULTIPROC_DIR},
            {"name": "METRICS_PORT", "value": str(METRICS_PORT)},
        ],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "readinessProbe": {"tcpSocket": {"port": "metrics"}, "periodSeconds": 10},
        "livenessProbe": {"tcpSocket": {"port": "metrics"}, "periodSeconds": 30},
        "resources": resources("10m", "48Mi", "100m", "96Mi"),
        "securityContext": security_context(),
        "volumeMounts": [
            {"name": "metrics", "mountPath": MULTIPROC_DIR, "readOnly": True},
            {"name": "exporter", "mountPath": "/etc/cafe", "readOnly": True},
        ],
    }


def pod(
    owner: str,
    labels: dict[str, str],
    containers: list[Obj],
    *,
    metrics: tuple[int, str] | None,
    init: list[Obj] | None = None,
    restart: str = "Always",
    grace_s: int = 30,
) -> Obj:
    volumes: list[Obj] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "metrics", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    if any(c["name"] == "metrics" for c in containers):
        volumes.append({"name": "exporter", "configMap": {"name": EXPORTER}})
    spec: Obj = {
        # The owner's identity under mTLS; the apps never call the Kubernetes API.
        "serviceAccountName": service_account_name(owner),
        "automountServiceAccountToken": False,
        # Service links would inject e.g. FLOWER_PORT=tcp://…, which Flower reads as its port.
        "enableServiceLinks": False,
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": grace_s,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **({"initContainers": init} if init else {}),
        "containers": containers,
        "volumes": volumes,
    }
    annotations = {
        # Istio's sidecar as a native sidecar: up before init containers (which need the network
        # under STRICT mTLS) and stopped after the app, so a Job's pod can complete.
        "sidecar.istio.io/nativeSidecar": "true",
    }
    if metrics:
        # Istio rewrites these to its agent, which merges these metrics with Envoy's own and
        # needs no mTLS from Prometheus (deploy/monitoring/prometheus.yml).
        annotations |= {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(metrics[0]),
            "prometheus.io/path": metrics[1],
        }
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": spec}


def deployment(
    name: str,
    labels: dict[str, str],
    template: Obj,
    *,
    replicas: int | None,
    strategy: Obj | None = None,
) -> Obj:
    spec: Obj = {}
    if replicas is not None:
        spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": {"app": name}}
    if strategy:
        spec["strategy"] = strategy
    spec["template"] = template
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def web(service: str) -> list[Obj]:
    name = f"{service}-web"
    labels = name_labels(name, service, "web")
    main = container(
        service, name="web", args=web_args(service), res=resources("100m", "256Mi", "1", "512Mi")
    )
    # Kubelet's probes come with the pod's IP as Host; Django only accepts ALLOWED_HOSTS.
    host = [{"name": "Host", "value": "localhost"}]
    main |= {
        "ports": [{"name": "http", "containerPort": WEB_PORT}],
        "startupProbe": {
            "httpGet": {"path": f"/{service}/healthz", "port": "http", "httpHeaders": host},
            "periodSeconds": 2,
            "failureThreshold": 30,
        },
        "readinessProbe": {
            "httpGet": {"path": f"/{service}/readyz", "port": "http", "httpHeaders": host},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": f"/{service}/healthz", "port": "http", "httpHeaders": host},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        # Keep serving while the endpoint is withdrawn from the sidecars and the gateway.
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }
    template = with_message_keys(
        pod(
            service,
            labels,
            [main],
            metrics=(WEB_PORT, f"/{service}/metrics"),
            init=[wait_for_migrations(service)],
        ),
        service,
    )
    if service == "customer":
        template = with_token_keys(template)
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return [
        deployment(name, labels, template, replicas=2, strategy=rolling),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": {"app": name},
                "ports": [
                    {"name": "http", "port": WEB_PORT, "targetPort": "http", "appProtocol": "http"}
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "labels": labels},
            # maxUnavailable rather than minAvailable: a drain still proceeds at one replica.
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}},
        },
    ]


def consumer(service: str, kind: str, args: list[str], res: Obj, *, replicas: int | None) -> Obj:
    """A worker or relay: no port; Ready once it has touched its READY_FILE, i.e. consumes.

    No liveness probe: `celery inspect ping` costs a broker round trip per probe and the relay
    has nothing cheaper; a crashed process exits and is restarted anyway."""
    name = f"{service}-{kind}"
    labels = name_labels(name, service, kind)
    main = container(service, kind, args, res, ("READY_FILE", READY_FILE))
    main["readinessProbe"] = {
        "exec": {"command": ["/bin/sh", "-c", 'test -e "$READY_FILE"']},
        "periodSeconds": 5,
    }
    template = pod(
        service,
        labels,
        [main, exporter()],
        metrics=(METRICS_PORT, "/metrics"),
        init=[wait_for_migrations(service)],
        # A worker's warm shutdown finishes its running tasks (late ack redelivers the rest).
        grace_s=60 if kind == "worker" else 30,
    )
    if kind == "worker":
        template = with_message_keys(template, service)
    return deployment(name, labels, template, replicas=replicas)


def worker(service: str) -> Obj:
    args = in_image(processes.worker_command("/", service))
    # No replicas: the worker's KEDA ScaledObject owns the count.
    return consumer(
        service, "worker", args, resources("100m", "256Mi", "1", "512Mi"), replicas=None
    )


def relay(service: str) -> Obj:
    args = in_image(processes.relay_command("/", service))
    # Several relays may run at once: each claims its batch with FOR UPDATE SKIP LOCKED, so they
    # share the outbox without publishing a row twice. Scale with kustomize `replicas`.
    return consumer(service, "relay", args, resources("50m", "128Mi", "500m", "256Mi"), replicas=1)


def beat() -> Obj:
    name = "orchestrator-beat"
    labels = name_labels(name, "orchestrator", "beat")
    schedule = Path("/tmp/celerybeat-schedule")  # noqa: S108 — the pod's emptyDir
    args = in_image(processes.beat_command("/", schedule))
    main = container("orchestrator", "beat", args, resources("20m", "128Mi", "200m", "256Mi"))
    # Beat only sends tasks; what they do is measured by the workers that run them.
    template = pod(
        "orchestrator", labels, [main], metrics=None, init=[wait_for_migrations("orchestrator")]
    )
    # Exactly one beat, also during a rollout: two would send every periodic task twice.
    return deployment(name, labels, template, replicas=1, strategy={"type": "Recreate"})


def flower() -> list[Obj]:
    name = FLOWER
    labels = name_labels(name, "flower", "flower")
    # Reached through its sidecar at the pod's address, so not only on 127.0.0.1. Its own
    # Django-free app (as make up and compose run it): it needs no service's settings or secrets.
    args = [
        "--address=0.0.0.0" if a.startswith("--address=") else a
        for a in in_image(processes.flower_command("/", FLOWER_PORT, app=processes.FLOWER_APP))
    ]
    main = container(FLOWER, "flower", args, resources("50m", "128Mi", "500m", "256Mi"))
    # Flower's healthcheck is outside its basic auth (FLOWER_BASIC_AUTH, from the Secret).
    probe = {"httpGet": {"path": "/flower/healthcheck", "port": "http"}, "periodSeconds": 10}
    main |= {
        "ports": [{"name": "http", "containerPort": FLOWER_PORT}],
        "readinessProbe": probe,
        "livenessProbe": probe | {"failureThreshold": 3},
    }
    template = pod(FLOWER, labels, [main], metrics=None)
    return [
        service_account(FLOWER),
        deployment(name, labels, template, replicas=1),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": {"app": name},
                "ports": [
                    {
                        "name": "http",
                        "port": FLOWER_PORT,
                        "targetPort": "http",
                        "appProtocol": "http",
                    }
                ],
            },
        },
    ]


def migrate(service: str) -> Obj:
    name = f"{service}-migrate"
    labels = name_labels(name, service, "migrate")
    main = container(
        service,
        "migrate",
        in_image(f"python manage.py bootstrap --settings={service}.settings"),
        resources("100m", "256Mi", "1", "512Mi"),
    )
    template = pod(service, labels, [main], metrics=None, restart="OnFailure")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": 10,
            # A Job's template cannot change: once finished it goes away, so the next
            # `kubectl apply` (a new image) creates and runs it again. bootstrap is idempotent.
            "ttlSecondsAfterFinished": 600,
            "template": template,
        },
    }
