"""Fixtures shared by every service's tests (each run uses one service's settings)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from rest_framework.test import APIClient


@pytest.fixture
def api() -> APIClient:
    # Imported here: the end-to-end suite shares this conftest and runs without Django settings.
    from rest_framework.test import APIClient

    return APIClient()


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
