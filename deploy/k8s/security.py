"""Who may talk to whom: NetworkPolicies (addresses and ports), Istio AuthorizationPolicies
(mTLS identities: one ServiceAccount per service), token verification and the edge limits at the
ingress gateway. Every rule is one the architecture needs (DESIGN.md §3, §7); anything else is
refused.

The calls there are:
- the ingress gateway → each web, on its port, for the public routes of deploy/gateway/routes.py
  only (admin, readiness, metrics and Flower are not on the public Gateway; operators reach them
  with `kubectl port-forward`, which enters the pod without passing its sidecar);
- every service's web → the customer web's JWKS (common.auth verifies tokens itself);
- Prometheus → each pod's Istio agent (port 15020), which serves the app's metrics merged with
  Envoy's (the pods' prometheus.io annotations): outside the sidecar's inbound listener, so no
  AuthorizationPolicy is involved, only the NetworkPolicy;
- the app pods → PostgreSQL and Redis, KEDA → Redis (queue lengths).
"""

from __future__ import annotations

from common.messaging.routing import SERVICES
from deploy.gateway import envoy, envoy_auth, policy
from deploy.gateway.routes import FLOWER, Listener, routes_of
from deploy.k8s.manifests import WEB_PORT, Obj, service_account_name

NAMESPACE = "cafe"
ISTIO_NAMESPACE = "istio-system"
# What `istioctl install` names the ingress gateway's pods and ServiceAccount.
INGRESS_LABELS = {"istio": "ingressgateway"}
INGRESS_PRINCIPAL = f"cluster.local/ns/{ISTIO_NAMESPACE}/sa/istio-ingressgateway-service-account"
# Where Prometheus (deploy/monitoring/prometheus.yml) and KEDA run; an overlay patches these
# NetworkPolicies if a cluster has them elsewhere.
PROMETHEUS_NAMESPACE = "monitoring"
PROMETHEUS_LABELS = {"app.kubernetes.io/name": "prometheus"}
KEDA_NAMESPACE = "keda"
KEDA_LABELS = {"app": "keda-operator"}
# The Istio agent's merged metrics (Prometheus scrapes it; the kubelet's rewritten probes too).
AGENT_PORT = 15020
POSTGRES_PORT = 5432
REDIS_PORT = 6379
# The Secret the overlay's cert-manager Certificate writes, in the ingress gateway's namespace.
TLS_SECRET = "cafe-gateway-tls"  # noqa: S105 — a Secret's name
# The ingress gateway's DENY policy for requests without a token (require_token).
DENY_TOKENLESS = "cafe-require-token"


def principal(owner: str) -> str:
    return f"cluster.local/ns/{NAMESPACE}/sa/{service_account_name(owner)}"


def _namespace(name: str) -> Obj:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


def _peer(namespace: str, labels: dict[str, str]) -> Obj:
    return {"namespaceSelector": _namespace(namespace), "podSelector": {"matchLabels": labels}}


def _owners(*owners: str) -> Obj:
    """The pods of these services (and Flower), by the label every pod of theirs carries."""
    return {
        "podSelector": {
            "matchExpressions": [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": list(owners)}
            ]
        }
    }


def _tcp(*ports: int) -> list[Obj]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def network_policy(name: str, selector: Obj, ingress: list[Obj], *, egress: bool = False) -> Obj:
    """Ingress to the selected pods from ``ingress`` only; ``egress``: no egress at all."""
    spec: Obj = {
        "podSelector": selector,
        "policyTypes": ["Ingress", "Egress"] if egress else ["Ingress"],
        "ingress": ingress,
    }
    if egress:
        spec["egress"] = []
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def network_policies() -> list[Obj]:
    prometheus = {
        "from": [_peer(PROMETHEUS_NAMESPACE, PROMETHEUS_LABELS)],
        "ports": _tcp(AGENT_PORT),
    }
    policies = [
        # Nothing reaches a pod of the namespace unless a policy below admits it.
        network_policy("default-deny-ingress", {}, []),
    ]
    for service in SERVICES:
        callers = [_peer(ISTIO_NAMESPACE, INGRESS_LABELS)]
        if service == "customer":
            callers.append(_owners(*SERVICES))  # the JWKS
        policies.append(
            network_policy(
                f"{service}-web",
                {"matchLabels": {"app": f"{service}-web"}},
                [{"from": callers, "ports": _tcp(WEB_PORT)}, prometheus],
            )
        )
    policies.append(
        network_policy(
            "consumers-metrics",
            {
                "matchExpressions": [
                    {
                        "key": "app.kubernetes.io/component",
                        "operator": "In",
                        "values": ["worker", "relay"],
                    }
                ]
            },
            [prometheus],
        )
    )
    # The data stores (the local overlay's, or a cluster's own under the same labels): the app
    # pods only, and they themselves connect nowhere.
    policies.append(
        network_policy(
            "postgres",
            {"matchLabels": {"app": "postgres"}},
            [{"from": [_owners(*SERVICES)], "ports": _tcp(POSTGRES_PORT)}],
            egress=True,
        )
    )
    policies.append(
        network_policy(
            "redis",
            {"matchLabels": {"app": "redis"}},
            [
                {
                    "from": [_owners(*SERVICES, FLOWER), _peer(KEDA_NAMESPACE, KEDA_LABELS)],
                    "ports": _tcp(REDIS_PORT),
                }
            ],
            egress=True,
        )
    )
    return policies


def _authorization_policy(name: str, spec: Obj, namespace: str | None = None) -> Obj:
    metadata: Obj = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": metadata,
        "spec": spec,
    }


def public_paths(service: str) -> list[str]:
    """The paths the Gateway sends to ``service``'s web: its public routes' prefixes."""
    return [f"{r.prefix}*" for r in routes_of(Listener.PUBLIC, {service})]


def authorization_policies() -> list[Obj]:
    # An ALLOW policy without rules: every workload of the namespace refuses every request that
    # no policy below allows (workers, relays, beat, Flower and the migrations: all of them).
    policies = [_authorization_policy("allow-nothing", {})]
    for service in SERVICES:
        rules: list[Obj] = [
            {
                "from": [{"source": {"principals": [INGRESS_PRINCIPAL]}}],
                "to": [{"operation": {"ports": [str(WEB_PORT)], "paths": public_paths(service)}}],
            }
        ]
        if service == "customer":
            rules.append(
                {
                    "from": [{"source": {"principals": [principal(s) for s in SERVICES]}}],
                    "to": [
                        {
                            "operation": {
                                "ports": [str(WEB_PORT)],
                                "methods": ["GET"],
                                "paths": [policy.JWKS_PATH],
                            }
                        }
                    ],
                }
            )
        policies.append(
            _authorization_policy(
                f"{service}-web",
                {
                    "selector": {"matchLabels": {"app": f"{service}-web"}},
                    "action": "ALLOW",
                    "rules": rules,
                },
            )
        )
    return policies


def jwks_uri() -> str:
    return f"http://customer-web.{NAMESPACE}.svc.cluster.local:{WEB_PORT}{policy.JWKS_PATH}"


def request_authentication(issuer: str) -> Obj:
    """Tokens verified at the ingress gateway: the bundled issuer's, by its JWKS. A request with
    an invalid token is refused there (401); one without a token passes this object, and the
    policy below decides. The token goes on to the service, which verifies it again."""
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "cafe-tokens", "namespace": ISTIO_NAMESPACE},
        "spec": {
            "selector": {"matchLabels": INGRESS_LABELS},
            "jwtRules": [
                {
                    "issuer": issuer,
                    "audiences": [policy.Identity.audience],
                    "jwksUri": jwks_uri(),
                    "forwardOriginalToken": True,
                    # The verified caller, for the per-caller rate limits (as at the local
                    # gateways); the EnvoyFilter below first removes any a client sent.
                    "outputClaimToHeaders": [
                        {"header": policy.SUBJECT_HEADER, "claim": "sub"},
                        {"header": policy.SCOPE_HEADER, "claim": "scope"},
                    ],
                }
            ],
        },
    }


def protected_operations() -> list[Obj]:
    """Every request under /api/ but the contract's anonymous calls (policy.ANONYMOUS), as
    AuthorizationPolicy operations (any of which matches)."""
    anonymous_paths = [a.path for a in policy.ANONYMOUS]
    operations: list[Obj] = [
        {"operation": {"paths": [f"{policy.PROTECTED_PREFIX}*"], "notPaths": anonymous_paths}}
    ]
    for call in policy.ANONYMOUS:
        operations.append({"operation": {"paths": [call.path], "notMethods": list(call.methods)}})
    return operations


def require_token() -> Obj:
    return _authorization_policy(
        DENY_TOKENLESS,
        {
            "selector": {"matchLabels": INGRESS_LABELS},
            "action": "DENY",
            "rules": [
                {
                    "from": [{"source": {"notRequestPrincipals": ["*"]}}],
                    "to": protected_operations(),
                }
            ],
        },
        ISTIO_NAMESPACE,
    )


def _gateway_filter_patch(operation: str, value: Obj) -> Obj:
    return {
        "applyTo": "HTTP_FILTER",
        "match": {
            "context": "GATEWAY",
            "listener": {
                "filterChain": {
                    "filter": {
                        "name": "envoy.filters.network.http_connection_manager",
                        "subFilter": {"name": "envoy.filters.http.router"},
                    }
                }
            },
        },
        "patch": {"operation": operation, "value": value},
    }


def missing_token_reply() -> Obj:
    """A request the DENY policy below refused for want of a token answers as the contract says
    (401 ``not_authenticated`` problem+json, ``WWW-Authenticate``), not with Istio's own
    ``403 RBAC: access denied``. Istio names each rule of an AuthorizationPolicy
    ``ns[<namespace>]-policy[<name>]-rule[<index>]``, and Envoy's RBAC filter puts the rule that
    denied a request in its response code details: only this policy's refusals become 401."""
    denied_here = (
        f"rbac_access_denied_matched_policy[ns[{ISTIO_NAMESPACE}]-policy[{DENY_TOKENLESS}]-"
    )
    when = {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": f"{envoy._TYPES}.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": (
                    f"response.code == 403 && response.code_details.startsWith('{denied_here}')"
                ),
            },
        }
    }
    return {
        **envoy._problem_mapper(policy.NOT_AUTHENTICATED, when),
        "status_code": policy.NOT_AUTHENTICATED.status,
    }


def local_replies() -> Obj:
    """The ingress gateway's own replies, as the local Envoy gateway's: every error it makes
    itself (a bad token's 401, 403, 413, 429, 50x) as problem+json, a missing token as 401."""
    return {"mappers": [missing_token_reply(), *envoy._local_replies()["mappers"]]}


def _local_replies_patch() -> Obj:
    manager = "envoy.filters.network.http_connection_manager"
    return {
        "applyTo": "NETWORK_FILTER",
        "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": {"name": manager}}}},
        "patch": {
            "operation": "MERGE",
            "value": {
                "name": manager,
                "typed_config": {
                    "@type": f"{envoy._TYPES}.filters.network.http_connection_manager.v3."
                    "HttpConnectionManager",
                    "local_reply_config": local_replies(),
                },
            },
        },
    }


def edge_filters() -> Obj:
    """The local gateways' edge rules at the ingress gateway, built by the same code that writes
    the Envoy gateway's config (deploy/gateway/envoy.py, envoy_auth.py): the caller headers
    removed from the client's request before anything reads them, the per-address and per-caller
    token buckets, the body limit (413), and the problem+json replies."""
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "cafe-edge", "namespace": ISTIO_NAMESPACE},
        "spec": {
            "workloadSelector": {"labels": INGRESS_LABELS},
            "configPatches": [
                _gateway_filter_patch("INSERT_FIRST", envoy_auth.strip_caller_headers()),
                _gateway_filter_patch(
                    "INSERT_BEFORE", envoy._rate_limit_filter(policy.RateLimit())
                ),
                _gateway_filter_patch(
                    "INSERT_BEFORE", envoy_auth.caller_rate_limit_filter(policy.CALLER_LIMITS)
                ),
                _gateway_filter_patch("INSERT_BEFORE", envoy._buffer_and_route()[0]),
                _local_replies_patch(),
            ],
        },
    }


def objects(issuer: str) -> list[Obj]:
    return [
        *network_policies(),
        *authorization_policies(),
        request_authentication(issuer),
        require_token(),
        edge_filters(),
    ]
