"""Settings for mypy's Django plugin only: every service's apps in one project, so one type-check
run sees every model. No process runs with these settings.

The plugin reads settings statically, so the project's own settings are declared with types here.
"""

from typing import Any

from common.settings import service_settings

_settings: dict[str, Any] = service_settings(
    "customer",
    apps=["customer.customers", "account.accounts", "order.orders", "orchestrator.sagas"],
)
globals().update(_settings)

SERVICE_NAME: str = _settings["SERVICE_NAME"]
REDIS_URL: str = _settings["REDIS_URL"]
IDEMPOTENCY_RETENTION_HOURS: float = _settings["IDEMPOTENCY_RETENTION_HOURS"]
PRUNE_BATCH_SIZE: int = _settings["PRUNE_BATCH_SIZE"]
