"""Test helpers shared by the services' own test suites (pure helpers, no fakes)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse


def assert_admin_pages_load(client: Client) -> int:
    """Sign in as a superuser and open every registered model's list page; returns how many."""
    user = get_user_model().objects.create_superuser("admin-test", "", "pw")
    client.force_login(user)
    opened = 0
    for model in admin.site._registry:
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = client.get(url)
        assert response.status_code == 200, f"{url} answered {response.status_code}"
        opened += 1
    return opened
