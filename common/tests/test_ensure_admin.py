"""ensure_admin keeps the admin's password the one ADMIN_PASSWORD says, validated in production."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

pytestmark = pytest.mark.django_db

STRONG = "Tall-granite-kettle-91"


def admin_login_works(password: str) -> bool:
    return get_user_model().objects.get(username="ops").check_password(password)


@pytest.fixture(autouse=True)
def admin_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("ADMIN_USERNAME", "ops")
    monkeypatch.setenv("CAFE_ENV", "development")
    return monkeypatch


def test_a_changed_password_is_applied(admin_env: pytest.MonkeyPatch) -> None:
    admin_env.setenv("ADMIN_PASSWORD", "first-password-1")
    call_command("ensure_admin")
    admin_env.setenv("ADMIN_PASSWORD", STRONG)

    call_command("ensure_admin")

    assert admin_login_works(STRONG)
    assert not admin_login_works("first-password-1")


def test_an_unchanged_password_leaves_the_user_alone(admin_env: pytest.MonkeyPatch) -> None:
    admin_env.setenv("ADMIN_PASSWORD", STRONG)
    call_command("ensure_admin")
    before = get_user_model().objects.get(username="ops").password

    call_command("ensure_admin")

    assert get_user_model().objects.get(username="ops").password == before


def test_a_development_stack_has_a_default_password(admin_env: pytest.MonkeyPatch) -> None:
    admin_env.delenv("ADMIN_PASSWORD", raising=False)

    call_command("ensure_admin")

    assert admin_login_works("admin")


@pytest.mark.parametrize("password", ["admin", "12345678", "password1", "short"])
def test_production_refuses_a_password_the_validators_refuse(
    admin_env: pytest.MonkeyPatch, password: str
) -> None:
    admin_env.setenv("CAFE_ENV", "production")
    admin_env.setenv("ADMIN_PASSWORD", password)

    with pytest.raises(CommandError, match="ADMIN_PASSWORD"):
        call_command("ensure_admin")

    assert not get_user_model().objects.filter(username="ops").exists()


def test_production_has_no_default_password(admin_env: pytest.MonkeyPatch) -> None:
    admin_env.setenv("CAFE_ENV", "production")
    admin_env.delenv("ADMIN_PASSWORD", raising=False)

    with pytest.raises(CommandError, match="ADMIN_PASSWORD is not set"):
        call_command("ensure_admin")


def test_production_accepts_a_strong_password(admin_env: pytest.MonkeyPatch) -> None:
    admin_env.setenv("CAFE_ENV", "production")
    admin_env.setenv("ADMIN_PASSWORD", STRONG)

    call_command("ensure_admin")

    assert admin_login_works(STRONG)
