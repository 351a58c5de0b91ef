"""Fixtures shared by every service's tests (each run uses one service's settings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from rest_framework.test import APIClient


@pytest.fixture
def api() -> APIClient:
    # Imported here: the end-to-end suite shares this conftest and runs without Django settings.
    from rest_framework.test import APIClient

    return APIClient()
