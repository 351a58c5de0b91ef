"""The gateway's route table: the one source every gateway config is generated from.

Paths are those of DESIGN.md §7; each prefix goes to the upstream that owns it. An upstream is a
service's web process, or Flower. Each route is served on the public listener, the operator
listener, or both (``listeners``): admin, readiness, metrics and Flower only ever on the
operator one, which is never published to the internet.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from enum import StrEnum

from common.messaging.routing import SERVICES

FLOWER = "flower"


class Listener(StrEnum):
    PUBLIC = "public"
    OPERATOR = "operator"


PUBLIC = frozenset({Listener.PUBLIC})
OPERATOR = frozenset({Listener.OPERATOR})
BOTH = PUBLIC | OPERATOR

# The only methods a read-only route passes; anything else is refused with 403.
READ_METHODS = ("GET", "HEAD")
# Paths under a read-only route where a POST is a read: Flower's task list asks for its rows
# with a POST (DataTables' server-side query: page, order, search), and its handler answers it
# exactly as the GET. Only these exact paths, and only POST besides the read methods.
READ_POSTS: tuple[str, ...] = (f"/{FLOWER}/tasks/datatable",)


@dataclass(frozen=True)
class Route:
    prefix: str
    upstream: str
    listeners: frozenset[Listener] = PUBLIC
    timeout_s: float = 15.0
    read_only: bool = False

    @property
    def slug(self) -> str:
        """A name for the route in generated configs (nginx named locations, Istio routes)."""
        return re.sub(r"[^A-Za-z0-9]+", "_", self.prefix.strip("/")) or "root"


def _service_routes(service: str) -> tuple[Route, ...]:
    return (
        Route(f"/{service}/healthz", service),
        # The OpenAPI schema and Swagger UI.
        Route(f"/{service}/api/", service, timeout_s=60.0),
        # Swagger UI's files on the public listener, the admin's on the operator one.
        Route(f"/{service}/static/", service, BOTH),
        Route(f"/{service}/admin/", service, OPERATOR, timeout_s=60.0),
        Route(f"/{service}/readyz", service, OPERATOR),
        Route(f"/{service}/metrics", service, OPERATOR, timeout_s=60.0),
    )


ROUTES: tuple[Route, ...] = (
    Route("/api/v1/customers", "customer"),
    Route("/api/v1/tokens", "customer"),
    Route("/api/v1/accounts", "account"),
    Route("/api/v1/menu", "order"),
    Route("/api/v1/orders", "order"),
    Route("/api/v1/checkouts", "orchestrator"),
    Route("/api/v1/cancellations", "orchestrator"),
    # The bundled identity provider's JWKS and discovery document.
    Route("/customer/.well-known/", "customer"),
    *(route for service in SERVICES for route in _service_routes(service)),
    # Flower can look, never act: no task sent, no worker shut down or resized.
    Route(f"/{FLOWER}/", FLOWER, OPERATOR, timeout_s=60.0, read_only=True),
)

# Flower's control endpoints, refused with 403 whatever the method (they are POSTs today, and
# the read-only rule refuses those already; these stay refused should Flower ever accept a GET).
REFUSED: tuple[str, ...] = (
    f"/{FLOWER}/api/task/send-task",
    f"/{FLOWER}/api/task/apply",
    f"/{FLOWER}/api/task/async-apply",
    f"/{FLOWER}/api/worker/",
)


def routes_of(listener: Listener, upstreams: Container[str] | None = None) -> list[Route]:
    """The routes ``listener`` serves, in table order; with ``upstreams``, only those whose
    upstream is one of them (the others answer 404)."""
    return [
        route
        for route in ROUTES
        if listener in route.listeners and (upstreams is None or route.upstream in upstreams)
    ]
