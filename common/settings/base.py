"""Settings shared by every service. Values come from the environment, with local defaults.

A service's ``settings.py`` is one call::

    globals().update(service_settings("customer", apps=["customer.customers"]))
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ

from common.messaging.keys import MESSAGE_KEYS_DIR
from common.messaging.routing import SERVICES
from common.settings.database import database_url
from common.settings.production import (
    DEVELOPMENT_SECRET_KEY,
    is_development,
    refuse_insecure,
)

BASE_DIR = Path(__file__).resolve().parents[2]

env = environ.Env()
_ENV_FILE = Path(os.environ.get("ENV_FILE", BASE_DIR / ".env"))
if _ENV_FILE.is_file():
    env.read_env(str(_ENV_FILE))

COMMON_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "axes",
    "common.ops",
    "common.idempotency",
    "common.outbox",
    "common.inbox",
]


# The bundled identity provider's issuer URL when nothing else is configured: the customer
# service's prefix behind a local gateway (``make up`` sets the real one).
DEFAULT_ISSUER = "http://127.0.0.1:8000/customer"
DEFAULT_JWKS_URL = "http://127.0.0.1:8001/customer/.well-known/jwks.json"
PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        # Operators are Django users; customers have a name and an email.
        "OPTIONS": {"user_attributes": ["username", "first_name", "last_name", "email", "name"]},
    },
    *(
        {"NAME": f"django.contrib.auth.password_validation.{name}"}
        for name in (
            "MinimumLengthValidator",
            "CommonPasswordValidator",
            "NumericPasswordValidator",
        )
    ),
]


def identity_settings() -> dict[str, Any]:
    """Who may call (DESIGN.md §7 "Identity and access"): the trusted token issuer, and the
    bundled provider's own keys and policy (used by the customer service only)."""
    return {
        # What every service trusts. An external OpenID provider replaces the bundled one by
        # setting these (and OIDC_CUSTOMER_CLAIM, if its tokens name the customer elsewhere).
        "OIDC_ISSUER": env.str("OIDC_ISSUER", default=DEFAULT_ISSUER),
        "OIDC_AUDIENCE": env.str("OIDC_AUDIENCE", default="cafe"),
        "OIDC_JWKS_URL": env.str("OIDC_JWKS_URL", default=DEFAULT_JWKS_URL),
        "OIDC_ALGORITHMS": env.list("OIDC_ALGORITHMS", default=["ES256", "RS256", "EdDSA"]),
        "OIDC_CUSTOMER_CLAIM": env.str("OIDC_CUSTOMER_CLAIM", default="sub"),
        "OIDC_OPERATOR_SCOPE": env.str("OIDC_OPERATOR_SCOPE", default="operator"),
        # The bundled provider (customer service): its issuer name, keys and token lifetime.
        "TOKEN_ISSUER": env.str("TOKEN_ISSUER", default=DEFAULT_ISSUER),
        "TOKEN_KEYS_DIR": env.str("TOKEN_KEYS_DIR", default=""),
        "TOKEN_LIFETIME_S": env.int("TOKEN_LIFETIME_S", default=900),
        "TOKEN_KEY_ACTIVATE_AFTER_S": env.float("TOKEN_KEY_ACTIVATE_AFTER_S", default=120.0),
        # Failed logins allowed per username and per client address before 429 (django-ratelimit).
        "LOGIN_FAILURES_PER_USERNAME": env.str("LOGIN_FAILURES_PER_USERNAME", default="5/5m"),
        "LOGIN_FAILURES_PER_ADDRESS": env.str("LOGIN_FAILURES_PER_ADDRESS", default="30/5m"),
        "RATELIMIT_IPV6_MASK": 64,
        # django-ratelimit lists Django's own RedisCache as "not officially supported"; it needs
        # an atomic add and incr, which RedisCache does with SET NX and INCR.
        "SILENCED_SYSTEM_CHECKS": ["django_ratelimit.W001"],
    }


# Paths a machine asks a web process for directly, not through TLS and the gateway (health
# probes, metric scrapers, the JWKS fetch, Nginx's token check): never redirected to https.
SSL_REDIRECT_EXEMPT = [
    r"^[a-z]+/(healthz|readyz|metrics)$",
    r"^customer/\.well-known/",
    r"^customer/auth/verify$",
]


def transport_security(*, production: bool) -> dict[str, Any]:
    """Behind TLS (production): the gateway or the ingress terminates it and says so in
    X-Forwarded-Proto, which both gateways set themselves, whatever a client sent."""
    return {
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
        "SECURE_SSL_REDIRECT": env.bool("SECURE_SSL_REDIRECT", default=production),
        "SECURE_REDIRECT_EXEMPT": SSL_REDIRECT_EXEMPT,
        "SECURE_HSTS_SECONDS": env.int(
            "SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if production else 0
        ),
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": production,
        "SECURE_HSTS_PRELOAD": production,
        "SESSION_COOKIE_SECURE": production,
        "CSRF_COOKIE_SECURE": production,
        "SESSION_COOKIE_HTTPONLY": True,
    }


def admin_login_throttling() -> dict[str, Any]:
    """django-axes: an admin login is refused (429) for ADMIN_LOCKOUT_MINUTES after
    ADMIN_LOGIN_FAILURES failures of one username from one client address. Token logins
    (POST /api/v1/tokens) have their own limits (identity_settings)."""
    return {
        "AUTHENTICATION_BACKENDS": [
            "axes.backends.AxesStandaloneBackend",
            "django.contrib.auth.backends.ModelBackend",
        ],
        "AXES_FAILURE_LIMIT": env.int("ADMIN_LOGIN_FAILURES", default=5),
        "AXES_COOLOFF_TIME": timedelta(minutes=env.float("ADMIN_LOCKOUT_MINUTES", default=15)),
        "AXES_LOCKOUT_PARAMETERS": [["username", "ip_address"]],
        "AXES_RESET_ON_SUCCESS": True,
        "AXES_CLIENT_IP_CALLABLE": "common.api.request_id.request_client",
    }


def service_settings(service: str, *, apps: list[str], handlers: str) -> dict[str, Any]:
    """Build the settings of one service. ``service`` is also its queue and URL prefix;
    ``handlers`` is the dotted path of its message handler table."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    development = is_development(os.environ)
    redis_url = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
    own_database = database_url(service, os.environ)
    refuse_insecure(
        os.environ,
        database_urls={
            f"{service.upper()}_DATABASE_URL": own_database,
            **{
                f"{other.upper()}_DATABASE_URL": os.environ[f"{other.upper()}_DATABASE_URL"]
                for other in SERVICES
                if os.environ.get(f"{other.upper()}_DATABASE_URL")
            },
        },
        redis_url=redis_url,
    )
    debug = env.bool("DEBUG", default=False)
    database = environ.Env.db_url_config(own_database)
    # Server-side parameter binding lets psycopg prepare a statement once it has run a few
    # times on a connection, so PostgreSQL skips parsing the same few statements of the message
    # path on every message (Django leaves both off by default, for poolers that cannot keep
    # prepared statements: DB_PREPARED_STATEMENTS=false behind such a pooler). Each execution is
    # still planned for its parameters and the table as it is now: a generic plan, cached when
    # a connection first met a table, was a sequential scan of a then-empty outbox or saga table
    # for the connection's lifetime, however large the table grew.
    prepared = env.bool("DB_PREPARED_STATEMENTS", default=True)
    database.setdefault("OPTIONS", {}).update(
        server_side_binding=True,
        prepare_threshold=2 if prepared else None,
        options="-c plan_cache_mode=force_custom_plan",
    )
    database["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    database["CONN_HEALTH_CHECKS"] = True

    return {
        "SERVICE_NAME": service,
        "BASE_DIR": BASE_DIR,
        # Production has no default (refuse_insecure has made sure there is a real one).
        "SECRET_KEY": env.str("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY if development else ""),
        "DEBUG": debug,
        "ALLOWED_HOSTS": env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"]),
        "CSRF_TRUSTED_ORIGINS": env.list(
            "CSRF_TRUSTED_ORIGINS",
            # The admin is on the gateway's operator listener (make up: 8100).
            default=["http://127.0.0.1:8100", "http://localhost:8100"],
        ),
        "INSTALLED_APPS": [*COMMON_APPS, *apps],
        "MIDDLEWARE": [
            "common.api.request_id.RequestIdMiddleware",
            "django_prometheus.middleware.PrometheusBeforeMiddleware",
            "django.middleware.security.SecurityMiddleware",
            "whitenoise.middleware.WhiteNoiseMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
            # Last, as django-axes asks: refuses a locked-out admin login.
            "axes.middleware.AxesMiddleware",
            "django_prometheus.middleware.PrometheusAfterMiddleware",
        ],
        **admin_login_throttling(),
        "ROOT_URLCONF": f"{service}.urls",
        "WSGI_APPLICATION": f"{service}.wsgi.application",
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        "DATABASES": {"default": database},
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "AUTH_PASSWORD_VALIDATORS": PASSWORD_VALIDATORS,
        # The first hashes new passwords; the others still check hashes made before.
        "PASSWORD_HASHERS": [
            "common.auth.hashers.Argon2idHasher",
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
            "django.contrib.auth.hashers.ScryptPasswordHasher",
        ],
        # Shared by every process of the service (login throttling counts live here).
        "CACHES": {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
                "KEY_PREFIX": service,
            }
        },
        **identity_settings(),
        "LANGUAGE_CODE": "en-us",
        "TIME_ZONE": "UTC",
        "USE_I18N": False,
        "USE_TZ": True,
        # Each service lives under its own prefix behind the gateway, static files included.
        "STATIC_URL": f"/{service}/static/",
        # Only the container image collects static files; elsewhere WhiteNoise serves them from apps.
        "STATIC_ROOT": env.str("STATIC_ROOT", default="") or None,
        "WHITENOISE_USE_FINDERS": True,
        "WHITENOISE_AUTOREFRESH": debug,
        "LOGIN_URL": f"/{service}/admin/login/",
        "SESSION_COOKIE_NAME": f"{service}_sessionid",
        "CSRF_COOKIE_NAME": f"{service}_csrftoken",
        "SESSION_COOKIE_PATH": f"/{service}/",
        "CSRF_COOKIE_PATH": f"/{service}/",
        "USE_X_FORWARDED_HOST": False,
        **transport_security(production=not development),
        # Peers whose X-Forwarded-For names the client (the gateway); gunicorn reads it too.
        "FORWARDED_ALLOW_IPS": env.list("FORWARDED_ALLOW_IPS", default=["127.0.0.1", "::1"]),
        "DATA_UPLOAD_MAX_MEMORY_SIZE": 1024 * 1024,
        "REDIS_URL": redis_url,
        "REST_FRAMEWORK": {
            "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
            "DEFAULT_PARSER_CLASSES": ["common.api.parsers.JSONParser"],
            # Every API view needs a verified token unless it names its anonymous methods
            # (common.auth.drf.AnonymousMethodsMixin).
            "DEFAULT_AUTHENTICATION_CLASSES": ["common.auth.drf.BearerAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["common.auth.drf.Authenticated"],
            "UNAUTHENTICATED_USER": None,
            "DEFAULT_PAGINATION_CLASS": "common.api.pagination.Pagination",
            "PAGE_SIZE": 50,
            "EXCEPTION_HANDLER": "common.api.errors.problem_exception_handler",
            "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
            "DATETIME_FORMAT": "iso-8601",
            "COERCE_DECIMAL_TO_STRING": False,
        },
        "SPECTACULAR_SETTINGS": {
            "TITLE": f"{service} service API",
            "DESCRIPTION": f"Public API v1 of the café backend's {service} service.",
            "VERSION": "1.0.0",
            "SERVE_INCLUDE_SCHEMA": False,
            "SWAGGER_UI_DIST": "SIDECAR",
            "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
            "REDOC_DIST": "SIDECAR",
            "SCHEMA_PATH_PREFIX": r"/api/v1",
            "COMPONENT_SPLIT_REQUEST": True,
            # The schema and Swagger UI are public (DESIGN.md §7); "Authorize" adds the token.
            "SERVE_AUTHENTICATION": [],
            "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
            "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
        },
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            # One JSON object per line (python-json-logger): a message, a request id or an
            # exception text can hold quotes and line breaks, never a field or a line of its own.
            "formatters": {
                "json": {
                    "()": "pythonjsonlogger.json.JsonFormatter",
                    "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
                    "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                    "static_fields": {"service": service},
                }
            },
            "filters": {
                "request_id": {"()": "common.api.request_id.RequestIdFilter"},
                # The per-second saga sweep would be half of every streamed log line.
                "routine_tasks": {
                    "()": "common.messaging.celery.QuietRoutineTasks",
                    "tasks": env.list("LOG_QUIET_TASKS", default=["sagas.sweep"]),
                },
            },
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "formatter": "json",
                    "filters": ["request_id"],
                }
            },
            "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
            "loggers": {
                "django.db.backends": {"level": "WARNING"},
                # It announces its configuration at every process start.
                "axes": {"level": "WARNING"},
                **{
                    name: {"filters": ["routine_tasks"]}
                    for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat")
                },
            },
        },
        "PROMETHEUS_EXPORT_MIGRATIONS": False,
        # Messaging: outbox relay, inbox, dead letters (see common.outbox and common.inbox).
        "MESSAGE_HANDLERS": handlers,
        # This service's private signing key(s) and every service's public keys (see
        # common.messaging.keys); `make up` creates both under var/message-keys if missing.
        "MESSAGE_SIGNING_KEYS_DIR": Path(
            env.str("MESSAGE_SIGNING_KEYS_DIR", default=str(MESSAGE_KEYS_DIR / service))
        ),
        "MESSAGE_VERIFY_KEYS_DIR": Path(
            env.str("MESSAGE_VERIFY_KEYS_DIR", default=str(MESSAGE_KEYS_DIR / "public"))
        ),
        "OUTBOX_BATCH_SIZE": env.int("OUTBOX_BATCH_SIZE", default=500),
        "OUTBOX_POLL_INTERVAL": env.float("OUTBOX_POLL_INTERVAL", default=1.0),
        "OUTBOX_LINGER_MS": env.float("OUTBOX_LINGER_MS", default=20.0),
        "OUTBOX_MAX_ATTEMPTS": env.int("OUTBOX_MAX_ATTEMPTS", default=12),
        # A row Redis refuses on its own backs off base·2^attempts, capped; a broker outage
        # only pauses the relay (retrying at most every OUTBOX_BROKER_RETRY_CAP_S).
        "OUTBOX_BACKOFF_BASE_S": env.float("OUTBOX_BACKOFF_BASE_S", default=0.5),
        "OUTBOX_BACKOFF_CAP_S": env.float("OUTBOX_BACKOFF_CAP_S", default=60.0),
        "OUTBOX_BROKER_RETRY_CAP_S": env.float("OUTBOX_BROKER_RETRY_CAP_S", default=5.0),
        # When the broker lost its data, rows sent in the last OUTBOX_REPLAY_WINDOW_S are sent
        # again (see common.outbox.replay); relays look every OUTBOX_EPOCH_CHECK_S.
        "OUTBOX_REPLAY_WINDOW_S": env.float("OUTBOX_REPLAY_WINDOW_S", default=300.0),
        "OUTBOX_EPOCH_CHECK_S": env.float("OUTBOX_EPOCH_CHECK_S", default=1.0),
        "OUTBOX_RETENTION_HOURS": env.float("OUTBOX_RETENTION_HOURS", default=24.0),
        "INBOX_RETENTION_HOURS": env.float("INBOX_RETENTION_HOURS", default=24.0 * 7),
        "INBOX_MAX_RETRIES": env.int("INBOX_MAX_RETRIES", default=8),
        "IDEMPOTENCY_RETENTION_HOURS": env.float("IDEMPOTENCY_RETENTION_HOURS", default=24.0),
        "PRUNE_BATCH_SIZE": env.int("PRUNE_BATCH_SIZE", default=1000),
        # Time for an operator to look at, fix and retry a dead letter before it is deleted.
        "DEAD_LETTER_RETENTION_HOURS": env.float("DEAD_LETTER_RETENTION_HOURS", default=24.0 * 30),
        # A service's own prunes run by housekeeping.prune: {name: dotted path of a function}.
        "HOUSEKEEPING_PRUNERS": {},
    }
