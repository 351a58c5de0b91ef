"""Outside a development stack, every insecure setting stops the process at settings import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from common.settings.production import (
    DEVELOPMENT_SECRET_KEY,
    insecure,
    is_development,
    refuse_insecure,
)

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "Jx8m2Qv7Lp4Zr9Tk1Wb6Nc3Hy5Fd0Gs-aE2uO8iY4tR7wP1qM"
GOOD_DB = "postgres://account:Vq7-long-db-password@db:5432/account"
GOOD_REDIS = "redis://:Rz4-long-redis-password@redis:6379/0"
PRODUCTION = {
    "SECRET_KEY": GOOD_SECRET,
    "DEBUG": "false",
    "ADMIN_PASSWORD": "Op3rator-Passphrase-long",
    "FLOWER_BASIC_AUTH": "ops:Fl0wer-Passphrase-long",
}


def problems(
    changes: dict[str, str | None], db: str = GOOD_DB, redis: str = GOOD_REDIS
) -> list[str]:
    environ = {k: v for k, v in {**PRODUCTION, **changes}.items() if v is not None}
    return insecure(environ, database_urls={"ACCOUNT_DATABASE_URL": db}, redis_url=redis)


def test_a_sound_production_configuration_has_no_problem() -> None:
    assert problems({}) == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": DEVELOPMENT_SECRET_KEY}, "SECRET_KEY is the development key"),
        ({"SECRET_KEY": "change-me-to-a-long-random-string"}, "SECRET_KEY is the development key"),
        ({"DEBUG": "true"}, "DEBUG is on"),
        ({"DEBUG": "1"}, "DEBUG is on"),
        ({"ADMIN_PASSWORD": "admin"}, "ADMIN_PASSWORD is a default"),
        ({"ADMIN_PASSWORD": "change-me-admin"}, "ADMIN_PASSWORD is a default"),
        ({"FLOWER_BASIC_AUTH": "admin:change-me-flower"}, "FLOWER_BASIC_AUTH"),
        ({"FLOWER_BASIC_AUTH": "ops:Fl0wer-Passphrase-long,admin:admin"}, "FLOWER_BASIC_AUTH"),
        ({"FLOWER_BASIC_AUTH": "ops:"}, "FLOWER_BASIC_AUTH"),
        ({"FLOWER_PASSWORD": "admin"}, "FLOWER_BASIC_AUTH / FLOWER_PASSWORD"),
    ],
)
def test_each_insecure_setting_is_named(changes: dict[str, str | None], problem: str) -> None:
    [found] = problems(changes)

    assert found.startswith(problem)


@pytest.mark.parametrize(
    ("db", "redis", "problem"),
    [
        ("postgres://account@db:5432/account", GOOD_REDIS, "ACCOUNT_DATABASE_URL has no password"),
        (
            "postgres://account:change-me-account@db:5432/account",
            GOOD_REDIS,
            "ACCOUNT_DATABASE_URL has a default",
        ),
        ("postgres://postgres:postgres@db:5432/account", GOOD_REDIS, "ACCOUNT_DATABASE_URL has a"),
        (GOOD_DB, "redis://redis:6379/0", "REDIS_URL has no password"),
        (GOOD_DB, "redis://:change-me-redis@redis:6379/0", "REDIS_URL has a default"),
    ],
)
def test_default_database_and_redis_passwords_are_named(db: str, redis: str, problem: str) -> None:
    [found] = problems({}, db=db, redis=redis)

    assert found.startswith(problem)


def test_a_database_password_may_come_from_pgpassword() -> None:
    db = "postgres://account@db:5432/account"

    assert problems({"PGPASSWORD": "Pg-long-passphrase-42"}, db=db) == []
    assert problems({"PGPASSWORD": "change-me"}, db=db) == [
        "ACCOUNT_DATABASE_URL has a default or placeholder password"
    ]


def test_the_refusal_names_every_problem_and_no_value() -> None:
    environ = {"SECRET_KEY": "change-me-x", "DEBUG": "true", "ADMIN_PASSWORD": "change-me-admin"}

    with pytest.raises(ImproperlyConfigured) as refused:
        refuse_insecure(environ, database_urls={"X": GOOD_DB}, redis_url=GOOD_REDIS)

    message = str(refused.value)
    assert "SECRET_KEY" in message and "DEBUG" in message and "ADMIN_PASSWORD" in message
    assert "change-me-x" not in message and "change-me-admin" not in message
    assert "CAFE_ENV=development" in message


@pytest.mark.parametrize(
    ("value", "development"),
    [("development", True), (" Development ", True), ("", False), ("prod", False), ("dev", False)],
)
def test_only_an_explicit_development_is_development(value: str, development: bool) -> None:
    assert is_development({"CAFE_ENV": value}) is development
    assert is_development({}) is False


def test_a_development_stack_may_use_its_local_defaults() -> None:
    environ = {"CAFE_ENV": "development", "DEBUG": "true", "ADMIN_PASSWORD": "admin"}

    refuse_insecure(environ, database_urls={"X": "postgres://postgres@127.0.0.1/x"}, redis_url="")


def _manage_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    for name in ("CAFE_ENV", "SECRET_KEY", "DEBUG", "ADMIN_PASSWORD", "FLOWER_BASIC_AUTH"):
        base.pop(name, None)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--settings=order.settings"],
        cwd=ROOT,
        env={**base, "ENV_FILE": "/nonexistent", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_process_without_cafe_env_refuses_to_start_with_local_defaults() -> None:
    checked = _manage_check({})

    assert checked.returncode != 0
    assert "ImproperlyConfigured" in checked.stderr
    assert "SECRET_KEY is not set" in checked.stderr
    assert "ORDER_DATABASE_URL has no password" in checked.stderr


def test_the_same_process_starts_as_a_development_stack() -> None:
    checked = _manage_check({"CAFE_ENV": "development"})

    assert checked.returncode == 0, checked.stderr
