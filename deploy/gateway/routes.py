"""The gateway's route table: the one source both gateway configs are generated from.

Paths are those of DESIGN.md §7; each prefix goes to the upstream that owns it. An upstream is a
service's web process, or Flower.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.messaging.routing import SERVICES

FLOWER = "flower"


@dataclass(frozen=True)
class Route:
    prefix: str
    upstream: str
    timeout_s: float = 15.0

    @property
    def slug(self) -> str:
        """A name for the route in generated configs (nginx named locations)."""
        return self.prefix.strip("/").replace("/", "_") or "root"


ROUTES: tuple[Route, ...] = (
    Route("/api/v1/customers", "customer"),
    Route("/api/v1/tokens", "customer"),
    Route("/api/v1/accounts", "account"),
    Route("/api/v1/menu", "order"),
    Route("/api/v1/orders", "order"),
    Route("/api/v1/checkouts", "orchestrator"),
    Route("/api/v1/cancellations", "orchestrator"),
    *(Route(f"/{service}/", service, timeout_s=60.0) for service in SERVICES),
    Route(f"/{FLOWER}/", FLOWER, timeout_s=60.0),
)
