"""Settings for mypy's Django plugin only: every service's apps in one project, so one type-check
run sees every model. No process runs with these settings.

The plugin reads settings statically, so the project's own settings are declared with types here.
"""

import os
from pathlib import Path
from typing import Any

# Type-checking runs with whatever environment a developer has; these settings are never served.
os.environ.setdefault("CAFE_ENV", "development")

from common.settings import service_settings

_settings: dict[str, Any] = service_settings(
    "customer",
    apps=["customer.customers", "account.accounts", "order.orders", "orchestrator.sagas"],
    handlers="customer.customers.handlers.HANDLERS",
)
globals().update(_settings)

SERVICE_NAME: str = _settings["SERVICE_NAME"]
REDIS_URL: str = _settings["REDIS_URL"]
FORWARDED_ALLOW_IPS: list[str] = _settings["FORWARDED_ALLOW_IPS"]
IDEMPOTENCY_RETENTION_HOURS: float = _settings["IDEMPOTENCY_RETENTION_HOURS"]
PRUNE_BATCH_SIZE: int = _settings["PRUNE_BATCH_SIZE"]
DEAD_LETTER_RETENTION_HOURS: float = _settings["DEAD_LETTER_RETENTION_HOURS"]
HOUSEKEEPING_PRUNERS: dict[str, str] = _settings["HOUSEKEEPING_PRUNERS"]
MESSAGE_HANDLERS: str = _settings["MESSAGE_HANDLERS"]
MESSAGE_SIGNING_KEYS_DIR: Path = _settings["MESSAGE_SIGNING_KEYS_DIR"]
MESSAGE_VERIFY_KEYS_DIR: Path = _settings["MESSAGE_VERIFY_KEYS_DIR"]
OUTBOX_BATCH_SIZE: int = _settings["OUTBOX_BATCH_SIZE"]
OUTBOX_POLL_INTERVAL: float = _settings["OUTBOX_POLL_INTERVAL"]
OUTBOX_LINGER_MS: float = _settings["OUTBOX_LINGER_MS"]
OUTBOX_MAX_ATTEMPTS: int = _settings["OUTBOX_MAX_ATTEMPTS"]
OUTBOX_BACKOFF_BASE_S: float = _settings["OUTBOX_BACKOFF_BASE_S"]
OUTBOX_BACKOFF_CAP_S: float = _settings["OUTBOX_BACKOFF_CAP_S"]
OUTBOX_BROKER_RETRY_CAP_S: float = _settings["OUTBOX_BROKER_RETRY_CAP_S"]
OUTBOX_REPLAY_WINDOW_S: float = _settings["OUTBOX_REPLAY_WINDOW_S"]
OUTBOX_EPOCH_CHECK_S: float = _settings["OUTBOX_EPOCH_CHECK_S"]
OUTBOX_RETENTION_HOURS: float = _settings["OUTBOX_RETENTION_HOURS"]
INBOX_RETENTION_HOURS: float = _settings["INBOX_RETENTION_HOURS"]
INBOX_MAX_RETRIES: int = _settings["INBOX_MAX_RETRIES"]
OIDC_ISSUER: str = _settings["OIDC_ISSUER"]
OIDC_AUDIENCE: str = _settings["OIDC_AUDIENCE"]
OIDC_JWKS_URL: str = _settings["OIDC_JWKS_URL"]
OIDC_ALGORITHMS: list[str] = _settings["OIDC_ALGORITHMS"]
OIDC_CUSTOMER_CLAIM: str = _settings["OIDC_CUSTOMER_CLAIM"]
OIDC_OPERATOR_SCOPE: str = _settings["OIDC_OPERATOR_SCOPE"]
TOKEN_ISSUER: str = _settings["TOKEN_ISSUER"]
TOKEN_KEYS_DIR: str = _settings["TOKEN_KEYS_DIR"]
TOKEN_LIFETIME_S: int = _settings["TOKEN_LIFETIME_S"]
TOKEN_KEY_ACTIVATE_AFTER_S: float = _settings["TOKEN_KEY_ACTIVATE_AFTER_S"]
LOGIN_FAILURES_PER_USERNAME: str = _settings["LOGIN_FAILURES_PER_USERNAME"]
LOGIN_FAILURES_PER_ADDRESS: str = _settings["LOGIN_FAILURES_PER_ADDRESS"]
SAGAS_IN_FLIGHT_PER_CUSTOMER: int = 20
SAGA_REPLY_TIMEOUT_S: float = 10.0
SAGA_BACKOFF_CAP_S: float = 60.0
SAGA_MAX_ATTEMPTS: int = 4
SAGA_FAIL_AFTER: int = 10
SAGA_RETENTION_HOURS: float = 72.0
ADMISSION_ENABLED: bool = True
ADMISSION_MAX_QUEUE_WAIT_S: float = 1.0
ADMISSION_MAX_QUEUE_DEPTH: int = 2000
ADMISSION_MAX_OUTBOX_AGE_S: float = 1.0
ADMISSION_MAX_LATE_SAGAS: int = 25
ADMISSION_RETRY_AFTER_S: int = 1
ADMISSION_CACHE_S: float = 0.5
TRACE_UI_URL: str = ""
