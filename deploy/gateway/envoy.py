"""Render the Envoy gateway configuration from the route table."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from deploy.gateway.routes import ROUTES

NOT_FOUND_BODY = json.dumps(
    {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "No route.",
        "code": "not_found",
    }
)

ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "duration_ms": "%DURATION%",
    "upstream": "%UPSTREAM_CLUSTER%",
}


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _cluster(name: str, host: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "connect_timeout": "1s",
        "type": "STRICT_DNS" if not host[0].isdigit() else "STATIC",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(host, port)}}]}],
        },
    }


def _route(prefix: str, cluster: str, timeout_s: float) -> dict[str, Any]:
    return {
        "match": {"prefix": prefix},
        "route": {"cluster": cluster, "timeout": f"{timeout_s:g}s"},
    }


def render(
    *, listen: tuple[str, int], admin: tuple[str, int], upstreams: Mapping[str, tuple[str, int]]
) -> dict[str, Any]:
    """Envoy bootstrap: one listener, routes by path prefix, one cluster per upstream."""
    routes = [_route(r.prefix, r.upstream, r.timeout_s) for r in ROUTES if r.upstream in upstreams]
    routes.append(
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": NOT_FOUND_BODY}},
            "response_headers_to_add": [
                {"header": {"key": "content-type", "value": "application/problem+json"}}
            ],
        }
    )
    connection_manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "codec_type": "AUTO",
        # The gateway is the edge: it sets X-Forwarded-For from the peer address itself.
        "use_remote_address": True,
        "xff_num_trusted_hops": 0,
        "generate_request_id": True,
        "always_set_request_id_in_response": True,
        "access_log": [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                    "log_format": {"json_format": ACCESS_LOG_FORMAT},
                },
            }
        ],
        "route_config": {
            "name": "cafe",
            "virtual_hosts": [{"name": "cafe", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "admin": {"address": _address(*admin)},
        "static_resources": {
            "listeners": [
                {
                    "name": "gateway",
                    "address": _address(*listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": connection_manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [_cluster(name, host, port) for name, (host, port) in upstreams.items()],
        },
    }
