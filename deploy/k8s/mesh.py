"""Istio and KEDA objects: the public gateway (routes from deploy/gateway/routes.py, the table the
Envoy and Nginx gateways are generated from too), mTLS, traffic policy, and worker autoscaling."""

from __future__ import annotations

from common.messaging.routing import SERVICES
from deploy.gateway import policy
from deploy.gateway.routes import FLOWER, Listener, Route, routes_of
from deploy.k8s.manifests import FLOWER_PORT, WEB_PORT, Obj, name_labels
from deploy.k8s.security import TLS_SECRET

GATEWAY = "cafe-gateway"


def upstream_host(upstream: str) -> str:
    return f"{upstream}-web" if upstream in SERVICES else upstream


def gateway() -> Obj:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY},
        "spec": {
            # The ingress gateway that `istioctl install` deploys in istio-system.
            "selector": {"istio": "ingressgateway"},
            "servers": [
                # TLS ends here, with the certificate the overlay's cert-manager Certificate
                # keeps in the ingress gateway's namespace (security.TLS_SECRET).
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["*"],
                    "tls": {
                        "mode": "SIMPLE",
                        "credentialName": TLS_SECRET,
                        "minProtocolVersion": "TLSV1_2",
                    },
                },
                # Plain HTTP only says where to go instead (301 to https).
                {
                    "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": ["*"],
                    "tls": {"httpsRedirect": True},
                },
            ],
        },
    }


def destination(route: Route) -> Obj:
    port = FLOWER_PORT if route.upstream == FLOWER else WEB_PORT
    return {"host": upstream_host(route.upstream), "port": {"number": port}}


def _http_routes(route: Route) -> list[Obj]:
    """As at the Envoy gateway: retries only for requests that are safe to send twice, GET and
    HEAD, and a POST carrying an Idempotency-Key (the service replays its first response)."""
    prefix = {"prefix": route.prefix}
    idempotent = [
        {"uri": prefix, "method": {"regex": "GET|HEAD"}},
        {
            "uri": prefix,
            "method": {"exact": "POST"},
            "headers": {policy.IDEMPOTENCY_KEY_HEADER: {"regex": ".+"}},
        },
    ]
    forward = {"route": [{"destination": destination(route)}], "timeout": f"{route.timeout_s:g}s"}
    retries = {
        "attempts": policy.RETRIES,
        "retryOn": "connect-failure,refused-stream,reset,gateway-error",
    }
    return [
        {"name": f"{route.slug}-idempotent", "match": idempotent, **forward, "retries": retries},
        # Istio retries every request twice by default; these must not run twice.
        {"name": route.slug, "match": [{"uri": prefix}], **forward, "retries": {"attempts": 0}},
    ]


def virtual_service() -> Obj:
    """The public listener's routes only: admin, readiness, metrics and Flower are never on the
    public Gateway (operators reach them with `kubectl port-forward`, Prometheus scrapes the
    pods directly)."""
    # One VirtualService: Istio merges several for one host in no set order, and the 404 below
    # must come last.
    http = [r for route in routes_of(Listener.PUBLIC) for r in _http_routes(route)]
    http.append(
        {
            "name": "not-found",
            "directResponse": {"status": 404, "body": {"string": policy.NOT_FOUND.body()}},
            "headers": {"response": {"set": {"content-type": policy.PROBLEM_CONTENT_TYPE}}},
        }
    )
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "cafe"},
        "spec": {"hosts": ["*"], "gateways": [GATEWAY], "http": http},
    }


def destination_rule(service: str) -> Obj:
    host = f"{service}-web"
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": host, "labels": name_labels(host, service, "web")},
        "spec": {
            "host": host,
            "trafficPolicy": {
                "connectionPool": {
                    "tcp": {
                        "maxConnections": 200,
                        "connectTimeout": f"{policy.CONNECT_TIMEOUT_S:g}s",
                    },
                    "http": {
                        # Beyond gunicorn's 2 workers × 4 threads per pod requests only queue:
                        # shed them early as 503 instead of letting latency grow.
                        "http1MaxPendingRequests": 64,
                        "http2MaxRequests": 256,
                        "maxRetries": 8,
                        "idleTimeout": "30s",
                    },
                },
                # As at the Envoy gateway: gateway errors (connect failures, 502/503/504) eject a
                # pod; an application's 500 does not (it would eject every pod alike).
                "outlierDetection": {
                    "consecutiveGatewayErrors": policy.EJECT_AFTER_FAILURES,
                    "consecutive5xxErrors": 0,
                    "interval": "5s",
                    "baseEjectionTime": f"{policy.EJECT_FOR_S}s",
                    "maxEjectionPercent": 50,
                },
                "tls": {"mode": "ISTIO_MUTUAL"},
            },
        },
    }


def peer_authentication() -> Obj:
    # Namespace-wide: no plaintext reaches any pod of the system. PostgreSQL and Redis of the
    # local overlay stay out of the mesh, so KEDA (outside it) can read queue lengths.
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }


# The mesh's OpenTelemetry provider, declared in the mesh config (meshConfig.extensionProviders,
# README "Traces"): the collector the services' OTEL_EXPORTER_OTLP_ENDPOINT names too.
TRACING_PROVIDER = "cafe-otlp"


def telemetry() -> Obj:
    """Istio's sidecars and ingress gateway trace to the same collector as the services: the
    ingress span is each request's root, and the apps' spans (parent-based) follow its decision."""
    return {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "cafe-tracing"},
        "spec": {
            "tracing": [
                {"providers": [{"name": TRACING_PROVIDER}], "randomSamplingPercentage": 100.0}
            ]
        },
    }


def scaled_object(service: str) -> Obj:
    name = f"{service}-worker"
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "labels": name_labels(name, service, "worker")},
        "spec": {
            "scaleTargetRef": {"name": name, "envSourceContainerName": "worker"},
            # Never 0: a worker holding prefetched (unacked) messages is not in the list length.
            "minReplicaCount": 1,
            "maxReplicaCount": 10,
            "pollingInterval": 5,
            "cooldownPeriod": 120,
            "triggers": [
                {
                    "type": "redis",
                    "metadata": {
                        # The queue is a Redis list named after the service (Celery's Redis
                        # transport); the address and login are the worker's own (its REDIS_URL
                        # is composed of the same three).
                        "addressFromEnv": "REDIS_ADDRESS",
                        "usernameFromEnv": "REDIS_USERNAME",
                        "passwordFromEnv": "REDIS_PASSWORD",
                        "databaseIndex": "0",
                        "listName": service,
                        "listLength": "50",
                    },
                }
            ],
        },
    }
