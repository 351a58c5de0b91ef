"""Where each service's database is: one rule shared by the settings and the local stack."""

from __future__ import annotations

from collections.abc import Mapping


def database_url(service: str, environ: Mapping[str, str]) -> str:
    """``<SERVICE>_DATABASE_URL`` if set, else built from the shared ``DATABASE_*`` variables."""
    explicit = environ.get(f"{service.upper()}_DATABASE_URL")
    if explicit:
        return explicit
    user = environ.get("DATABASE_USER", "postgres")
    host = environ.get("DATABASE_HOST", "127.0.0.1")
    port = environ.get("DATABASE_PORT", "5432")
    prefix = environ.get("DATABASE_NAME_PREFIX", "")
    return f"postgres://{user}@{host}:{port}/{prefix}{service}"
