from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _fast_hasher_and_own_counters(settings: Any, request: pytest.FixtureRequest) -> None:
    """Django's own advice for tests: a fast password hasher (the real one takes ~0.2 s of CPU
    per hash, by design). And login-failure counters of this test's own, so tests do not lock
    each other out through the shared Redis."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": request.node.nodeid,
        }
    }
