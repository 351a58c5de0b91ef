"""Fixtures shared by every service's tests (each run uses one service's settings)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rest_framework.test import APIClient

    from common.auth.principal import Principal


@pytest.fixture
def token_keys(settings: Any, tmp_path: Path) -> Path:
    """A bundled issuer's key directory that this service trusts (verified from the directory,
    as the customer service verifies its own tokens)."""
    from common.auth.keys import key_add

    keys = tmp_path / "token-keys"
    key_add(keys)
    settings.TOKEN_KEYS_DIR = str(keys)
    settings.TOKEN_ISSUER = settings.OIDC_ISSUER
    return keys


@pytest.fixture
def client_for(token_keys: Path) -> Callable[[Principal], APIClient]:
    """An API client sending a real access token of ``principal``."""
    # Imported here: the end-to-end suite shares this conftest and runs without Django settings.
    from rest_framework.test import APIClient

    from common.testing import mint_token

    def make(principal: Principal) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {mint_token(principal)}")
        return client

    return make


@pytest.fixture
def as_customer(client_for: Callable[[Principal], APIClient]) -> Callable[[uuid.UUID], APIClient]:
    from common.auth.principal import Principal

    return lambda customer_id: client_for(Principal.for_customer(customer_id))


@pytest.fixture
def api(client_for: Callable[[Principal], APIClient]) -> APIClient:
    """An operator's client: may read everything and act for any customer (DESIGN.md §7)."""
    from common.auth.principal import Principal

    return client_for(Principal.for_operator("test-operator"))


@pytest.fixture
def anonymous() -> APIClient:
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def admin_operator(client: Any) -> Any:
    """A Django test client logged into this service's admin as a staff superuser."""
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("op", "", "pw"))
    return client


@pytest.fixture(scope="session", autouse=True)
def message_keys(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path | None]:
    """A key pair for every service, made for this test run: the test process and every worker
    it starts sign and verify with these (one signing directory holds all four private keys)."""
    if not request.config.pluginmanager.hasplugin("django"):
        yield None  # the end-to-end suite: its stack makes its own keys
        return
    from django.conf import settings

    from common.messaging.keys import forget_key_rings, generate_key_pair
    from common.messaging.routing import SERVICES

    root = tmp_path_factory.mktemp("message-keys")
    for service in SERVICES:
        generate_key_pair(service, signing_dir=root / "private", verify_dir=root / "public")
    saved = {k: os.environ.get(k) for k in ("MESSAGE_SIGNING_KEYS_DIR", "MESSAGE_VERIFY_KEYS_DIR")}
    os.environ["MESSAGE_SIGNING_KEYS_DIR"] = str(root / "private")
    os.environ["MESSAGE_VERIFY_KEYS_DIR"] = str(root / "public")
    settings.MESSAGE_SIGNING_KEYS_DIR = root / "private"
    settings.MESSAGE_VERIFY_KEYS_DIR = root / "public"
    forget_key_rings()
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
