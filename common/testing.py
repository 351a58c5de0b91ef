"""Test helpers shared by the services' own test suites (pure helpers, no fakes)."""

from __future__ import annotations

from pathlib import Path

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from common.auth.principal import Principal


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


def mint_token(principal: Principal, *, lifetime_s: int = 300, **claims: object) -> str:
    """A real access token for ``principal``, signed with the test key directory's active key
    (the ``token_keys`` fixture), as the bundled provider would issue it."""
    from datetime import UTC, datetime

    from django.conf import settings

    from common.auth.issue import access_token_issue
    from common.auth.keys import KeyRing

    ring = KeyRing.load(Path(settings.TOKEN_KEYS_DIR), activate_after_s=0)
    token = access_token_issue(
        ring=ring,
        issuer=settings.TOKEN_ISSUER,
        audience=settings.OIDC_AUDIENCE,
        subject=principal.subject,
        scopes=sorted(principal.scopes),
        lifetime_s=lifetime_s,
        now=datetime.now(UTC),
    ).access_token
    if claims:
        import jwt

        payload = jwt.decode(token, options={"verify_signature": False})
        key = ring.signing_key(datetime.now(UTC))
        token = jwt.encode(
            {**payload, **claims},
            key.private_key,
            algorithm="ES256",
            headers={"kid": key.kid, "typ": "at+jwt"},
        )
    return token


# An operator principal for tests that call use-cases directly (an operator may act for anyone).
OPERATOR = Principal.for_operator("test-operator")
