"""Settings of the simulator: the four services' apps in one process, one database each.

The simulator switches "which service is acting" (its database connection, ``SERVICE_NAME`` and
handler table) between steps; see ``tests.sim.world``. Each database holds only its own
service's tables (``SimulationRouter``), exactly as that service's migrations make them.
"""

from __future__ import annotations

import copy
import os
from typing import Any

# A development stack of its own (common.settings.production): no production secrets here.
os.environ.setdefault("CAFE_ENV", "development")

from common.settings import service_settings
from common.settings.base import BASE_DIR, env

SERVICES = ("customer", "account", "order", "orchestrator")
APPS = {
    "customer": "customer.customers",
    "account": "account.accounts",
    "order": "order.orders",
    "orchestrator": "orchestrator.sagas",
}
# The production handler table of each service, wrapped so the scheduler can kill a handler's
# transaction before it commits.
HANDLER_TABLES = {service: f"tests.sim.handlers.{service.upper()}" for service in SERVICES}

_settings: dict[str, Any] = service_settings(
    "orchestrator", apps=list(APPS.values()), handlers=HANDLER_TABLES["orchestrator"]
)
globals().update(_settings)


def _database(service: str) -> dict[str, Any]:
    database = copy.deepcopy(_settings["DATABASES"]["default"])
    prefix = os.environ.get("DATABASE_NAME_PREFIX", "")
    database["NAME"] = f"{prefix}simulation_{service}"
    # The simulation's commits need no durability: a crash of PostgreSQL is not simulated.
    database["OPTIONS"]["options"] += " -c synchronous_commit=off"
    database["CONN_MAX_AGE"] = None
    database["CONN_HEALTH_CHECKS"] = False
    return database


DATABASES = {"default": _database("orchestrator"), **{s: _database(s) for s in SERVICES}}
DATABASE_ROUTERS = ["tests.sim.settings.SimulationRouter"]


class SimulationRouter:
    """Migrations only: a service's own app goes to its database, the common apps to all.
    Reads and writes go to ``default``, which is the acting service's connection."""

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        owner = {label.rsplit(".", 1)[1]: service for service, label in APPS.items()}
        return app_label not in owner or owner[app_label] == db


# The saga policy of production with fewer tries, so that runs reach timeouts, compensations
# and `failed` sagas within a few minutes of virtual time.
SAGA_REPLY_TIMEOUT_S = env.float("SAGA_REPLY_TIMEOUT_S", default=10.0)
SAGA_BACKOFF_CAP_S = env.float("SAGA_BACKOFF_CAP_S", default=60.0)
SAGA_MAX_ATTEMPTS = env.int("SIM_SAGA_MAX_ATTEMPTS", default=3)
SAGA_FAIL_AFTER = env.int("SIM_SAGA_FAIL_AFTER", default=4)
SAGA_SWEEP_EVERY_S = 1.0
INBOX_MAX_RETRIES = env.int("SIM_INBOX_MAX_RETRIES", default=3)
# The orchestrator's own settings beyond the common base (admission, limits, retention), as the
# orchestrator runs with them; the saga policy below is the simulation's.
from orchestrator import settings as _orchestrator  # noqa: E402

globals().update(
    {
        name: getattr(_orchestrator, name)
        for name in dir(_orchestrator)
        if name.startswith(("SAGAS_", "ADMISSION_", "SAGA_RETENTION"))
    }
)
# Passwords play no part in a run; the real hasher would only cost time (Django's test advice).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Admission control reads the broker's queues and the wall clock: there is neither here.
ADMISSION_ENABLED = False
# Each service signs what it sends with its own key, as in production (tests.sim.world).
SIM_MESSAGE_KEYS_DIR = BASE_DIR / "var" / "sim-message-keys"
MESSAGE_VERIFY_KEYS_DIR = SIM_MESSAGE_KEYS_DIR / "public"
MESSAGE_SIGNING_KEYS_DIR = SIM_MESSAGE_KEYS_DIR / "orchestrator"
LOGGING = {"version": 1, "disable_existing_loggers": True, "root": {"level": "CRITICAL"}}
