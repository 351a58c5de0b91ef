"""The gateway's route table: the one source both gateway configs are generated from.

Paths are those of DESIGN.md §7; each prefix goes to the service that owns it.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.messaging.routing import SERVICES


@dataclass(frozen=True)
class Route:
    prefix: str
    upstream: str
    timeout_s: float = 15.0


ROUTES: tuple[Route, ...] = (
    Route("/api/v1/customers", "customer"),
    Route("/api/v1/accounts", "account"),
    Route("/api/v1/menu", "order"),
    Route("/api/v1/orders", "order"),
    Route("/api/v1/checkouts", "orchestrator"),
    Route("/api/v1/cancellations", "orchestrator"),
    *(Route(f"/{service}/", service, timeout_s=60.0) for service in SERVICES),
)
