"""Whether a process runs in a local development stack, and what it refuses to start with
when it does not.

"Development" is an explicit ``CAFE_ENV=development``, which only the local stacks set
(`make up`, the end-to-end stack, the benchmark stack, the test suite). Anything else, unset
included, is production: a missing setting fails safe.

In production every process refuses to start (ImproperlyConfigured at settings import) with a
missing or development ``SECRET_KEY``, ``DEBUG`` on, or a default or ``change-me…`` password for
the admin, Flower, a database or Redis. Each problem is named; no value is ever printed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

CAFE_ENV = "CAFE_ENV"
DEVELOPMENT = "development"
# The key the settings fall back to in a development stack only.
DEVELOPMENT_SECRET_KEY = "insecure-local-development-key-change-me"  # noqa: S105
# Passwords anyone would try first: the stacks' own defaults and the products' usual ones.
DEFAULT_PASSWORDS = frozenset(
    {"admin", "password", "postgres", "redis", "flower", "secret", "changeme", "change-me"}
)
_PLACEHOLDER_PREFIXES = ("change-me", "change_me", "changeme", "insecure")
TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})


def is_development(environ: Mapping[str, str]) -> bool:
    return environ.get(CAFE_ENV, "").strip().lower() == DEVELOPMENT


def _weak(password: str) -> bool:
    value = password.strip().lower()
    return value in DEFAULT_PASSWORDS or value.startswith(_PLACEHOLDER_PREFIXES)


def _url_password(url: str) -> str | None:
    """The password of a URL (``scheme://user:password@host/…``); None when it has none."""
    password = urlsplit(url).password
    return unquote(password) if password else None


def _url_problem(name: str, url: str, fallback: str | None = None) -> str | None:
    """``fallback``: the password a client uses when the URL has none (libpq's PGPASSWORD)."""
    password = _url_password(url) or fallback
    if not password:
        return f"{name} has no password"
    if _weak(password):
        return f"{name} has a default or placeholder password"
    return None


def _flower_passwords(environ: Mapping[str, str]) -> Iterator[str]:
    for login in filter(None, environ.get("FLOWER_BASIC_AUTH", "").split(",")):
        yield login.partition(":")[2]
    if "FLOWER_PASSWORD" in environ:
        yield environ["FLOWER_PASSWORD"]


def insecure(
    environ: Mapping[str, str], *, database_urls: Mapping[str, str], redis_url: str
) -> list[str]:
    """What makes this configuration unfit for production, one line per problem.

    ``database_urls``: each variable name and the URL this process connects with (a URL
    without a password takes PGPASSWORD's, as libpq does).
    """
    problems = []
    secret = environ.get("SECRET_KEY", "")
    if not secret:
        problems.append("SECRET_KEY is not set")
    elif secret == DEVELOPMENT_SECRET_KEY or _weak(secret):
        problems.append("SECRET_KEY is the development key or a placeholder")
    if environ.get("DEBUG", "").strip().lower() in TRUE:
        problems.append("DEBUG is on")
    if "ADMIN_PASSWORD" in environ and _weak(environ["ADMIN_PASSWORD"]):
        problems.append("ADMIN_PASSWORD is a default or placeholder password")
    if any(not password or _weak(password) for password in _flower_passwords(environ)):
        problems.append("FLOWER_BASIC_AUTH / FLOWER_PASSWORD has a default or placeholder password")
    for name, url in database_urls.items():
        if (problem := _url_problem(name, url, environ.get("PGPASSWORD"))) is not None:
            problems.append(problem)
    if (problem := _url_problem("REDIS_URL", redis_url)) is not None:
        problems.append(problem)
    return problems


def refuse_insecure(
    environ: Mapping[str, str], *, database_urls: Mapping[str, str], redis_url: str
) -> None:
    """Raise ImproperlyConfigured, naming every problem, unless this is a development stack or
    nothing is wrong."""
    if is_development(environ):
        return
    problems = insecure(environ, database_urls=database_urls, redis_url=redis_url)
    if problems:
        raise ImproperlyConfigured(
            "refusing to start with an insecure production configuration: "
            + "; ".join(problems)
            + f". Fix these, or set {CAFE_ENV}={DEVELOPMENT} for a local development stack."
        )
