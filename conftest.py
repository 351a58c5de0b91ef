"""Fixtures shared by every service's tests (each run uses one service's settings)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
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
