"""The admin's login form is throttled per username and client address (django-axes)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

LOGIN = "/account/admin/login/"


def attempt(client: Client, password: str, address: str = "10.0.0.1") -> int:
    # From the gateway (a trusted proxy), which names the client in X-Forwarded-For.
    response = client.post(
        LOGIN,
        {"username": "ops", "password": password},
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR=address,
    )
    return response.status_code


@override_settings(AXES_FAILURE_LIMIT=3)
def test_repeated_failures_lock_out_that_username_from_that_address(client: Client) -> None:
    get_user_model().objects.create_superuser("ops", "", "Right-horse-battery-7")

    failures = [attempt(client, "wrong") for _ in range(3)]
    locked = attempt(client, "Right-horse-battery-7")
    elsewhere = attempt(Client(), "Right-horse-battery-7", address="10.0.0.2")

    assert failures[:2] == [200, 200]  # the form again, with an error
    assert failures[2] == 429
    assert locked == 429
    assert elsewhere == 302
