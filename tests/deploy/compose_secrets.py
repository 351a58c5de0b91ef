"""Which of .env's secrets each container of docker-compose.yml may receive: its own service's
only (its SECRET_KEY, database password, Redis user's password; the admin login for its migrate
container); the postgres container every role's password for its init script, redis-acl every
Redis user's for the aclfile; Flower its own; the broker and the gateways none."""

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
        own = {
            f"{service.upper()}_{secret}"
            for secret in ("SECRET_KEY", "DB_PASSWORD", "REDIS_PASSWORD")
        }
        return own | ({"ADMIN_PASSWORD"} if container.endswith("-migrate") else set())
    return {
        "postgres": {"POSTGRES_PASSWORD", *(f"{s.upper()}_DB_PASSWORD" for s in SERVICES)},
        # It writes the aclfile (hashes only): the broker itself needs no password.
        "redis-acl": {f"{user.upper()}_REDIS_PASSWORD" for user in (*SERVICES, "flower")},
        "flower": {"FLOWER_REDIS_PASSWORD", "FLOWER_BASIC_AUTH"},
    }.get(container, set())
