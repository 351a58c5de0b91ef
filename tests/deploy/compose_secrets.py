"""Which of .env's secrets each container of docker-compose.yml may receive: its own service's
only (its SECRET_KEY, database password, Redis credentials; the admin login for its migrate
container); the postgres container every role's password for its init script; Flower its own."""

from __future__ import annotations

import re
from pathlib import Path

from common.messaging.routing import SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def secret_names() -> set[str]:
    """The variables compose refuses to start without: every secret of .env."""
    return set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))


def owner(container: str) -> str | None:
    """The service a container belongs to (``account-worker`` → ``account``), if any."""
    service = container.rsplit("-", 1)[0]
    return service if service in SERVICES else None


def allowed_secrets(container: str) -> set[str]:
    service = owner(container)
    if service is not None:
        own = {f"{service.upper()}_SECRET_KEY", f"{service.upper()}_DB_PASSWORD", "REDIS_PASSWORD"}
        return own | ({"ADMIN_PASSWORD"} if container.endswith("-migrate") else set())
    return {
        "postgres": {"POSTGRES_PASSWORD", *(f"{s.upper()}_DB_PASSWORD" for s in SERVICES)},
        "redis": {"REDIS_PASSWORD"},
        "flower": {"REDIS_PASSWORD", "FLOWER_BASIC_AUTH"},
    }.get(container, set())
