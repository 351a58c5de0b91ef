"""The bundled identity provider: sign-up passwords, logins, tokens, keys, and who sees what."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from common.auth.keys import KeyRing, key_add
from customer.customers.models import Customer

pytestmark = pytest.mark.django_db

PASSWORD = "a good long passphrase"


def sign_up(anonymous: APIClient, email: str = "aiko@example.com", **body: object) -> Any:
    return anonymous.post(
        "/api/v1/customers",
        {"name": "Aiko", "email": email, "password": PASSWORD, **body},
        format="json",
    )


def login(client: APIClient, username: str, password: str = PASSWORD) -> Any:
    return client.post(
        "/api/v1/tokens", {"username": username, "password": password}, format="json"
    )


def claims_of(token: str, anonymous: APIClient) -> dict[str, Any]:
    jwks = anonymous.get("/customer/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWK.from_dict(next(k for k in jwks["keys"] if k["kid"] == kid))
    decoded: dict[str, Any] = jwt.decode(token, key.key, algorithms=["ES256"], audience="cafe")
    return decoded


@pytest.mark.parametrize(
    ("password", "why"),
    [("short", "too short"), ("password123", "too common"), ("48271936405", "entirely numeric")],
)
def test_a_weak_password_is_refused(
    anonymous: APIClient, token_keys: Path, password: str, why: str
) -> None:
    response = sign_up(anonymous, password=password)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert why in " ".join(response.json()["errors"]["password"])
    assert Customer.objects.count() == 0


def test_a_password_like_the_email_is_refused(anonymous: APIClient, token_keys: Path) -> None:
    response = sign_up(anonymous, email="marmalade.sky@example.com", password="marmalade.sky")

    assert response.status_code == 400
    assert "too similar" in " ".join(response.json()["errors"]["password"])


def test_a_customer_logs_in_with_their_email_in_any_case(
    anonymous: APIClient, token_keys: Path
) -> None:
    customer_id = sign_up(anonymous).json()["id"]

    response = login(anonymous, "AIKO@Example.COM")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 900)
    header = jwt.get_unverified_header(body["access_token"])
    assert (header["alg"], header["typ"]) == ("ES256", "at+jwt")
    claims = claims_of(body["access_token"], anonymous)
    assert claims["sub"] == customer_id
    assert claims["scope"] == "customer"
    assert claims["iss"] == "http://127.0.0.1:8000/customer"
    assert claims["exp"] - claims["iat"] == 900
    assert {"jti", "client_id"} <= set(claims)


def test_an_operator_logs_in_with_their_username(anonymous: APIClient, token_keys: Path) -> None:
    get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True)
    get_user_model().objects.create_user("not-staff", password=PASSWORD)

    operator = login(anonymous, "ops")
    plain_user = login(anonymous, "not-staff")

    assert operator.status_code == 200
    assert claims_of(operator.json()["access_token"], anonymous)["scope"] == "operator"
    assert (plain_user.status_code, plain_user.json()["code"]) == (401, "invalid_credentials")


@pytest.mark.parametrize("username", ["aiko@example.com", "nobody@example.com"])
def test_wrong_credentials_are_401(anonymous: APIClient, token_keys: Path, username: str) -> None:
    sign_up(anonymous)

    response = login(anonymous, username, "not the password")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_credentials"
    assert response["WWW-Authenticate"] == 'Bearer realm="cafe"'


def test_a_customer_without_a_password_logs_in_once_one_is_set(
    anonymous: APIClient, token_keys: Path
) -> None:
    Customer.objects.create(name="Old", email="old@example.com")

    before = login(anonymous, "old@example.com", "")
    call_command(
        "customer_set_password", "old@example.com", "--password-stdin", stdin=StringIO(PASSWORD)
    )
    after = login(anonymous, "old@example.com")

    assert before.status_code in {400, 401}
    assert after.status_code == 200


def test_repeated_failures_for_one_username_are_429_with_retry_after(
    anonymous: APIClient, token_keys: Path, settings: Any
) -> None:
    settings.LOGIN_FAILURES_PER_USERNAME = "3/5m"
    sign_up(anonymous)

    failures = [login(anonymous, "aiko@example.com", "wrong").status_code for _ in range(3)]
    locked = login(anonymous, "Aiko@example.com")  # the right password, but too late
    other_user = login(anonymous, "someone@example.com", "wrong")

    assert failures == [401, 401, 401]
    assert locked.status_code == 429
    assert locked.json()["code"] == "too_many_attempts"
    assert 1 <= int(locked["Retry-After"]) <= 300
    assert other_user.status_code == 401


def test_repeated_failures_from_one_address_are_429(
    anonymous: APIClient, token_keys: Path, settings: Any
) -> None:
    settings.LOGIN_FAILURES_PER_ADDRESS = "4/5m"

    codes = [login(anonymous, f"u{n}@example.com", "wrong").status_code for n in range(5)]
    elsewhere = APIClient(REMOTE_ADDR="192.0.2.9")

    assert codes == [401, 401, 401, 401, 429]
    assert login(elsewhere, "u9@example.com", "wrong").status_code == 401


def test_a_blocked_customer_cannot_log_in(
    anonymous: APIClient, api: APIClient, token_keys: Path
) -> None:
    customer_id = sign_up(anonymous).json()["id"]
    api.post(f"/api/v1/customers/{customer_id}/block")

    response = login(anonymous, "aiko@example.com")

    assert (response.status_code, response.json()["code"]) == (403, "customer_blocked")


def test_jwks_and_discovery_are_public(anonymous: APIClient, token_keys: Path) -> None:
    jwks = anonymous.get("/customer/.well-known/jwks.json", HTTP_AUTHORIZATION="Bearer junk")
    discovery = anonymous.get("/customer/.well-known/openid-configuration").json()

    assert jwks.status_code == 200
    (key,) = jwks.json()["keys"]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in key  # never the private part
    assert discovery["issuer"] == "http://127.0.0.1:8000/customer"
    assert discovery["jwks_uri"] == "http://127.0.0.1:8000/customer/.well-known/jwks.json"
    assert discovery["token_endpoint"] == "http://127.0.0.1:8000/api/v1/tokens"


def test_rotation_publishes_a_new_key_first_and_old_tokens_stay_valid(
    anonymous: APIClient, token_keys: Path, settings: Any
) -> None:
    sign_up(anonymous)
    old_token = login(anonymous, "aiko@example.com").json()["access_token"]

    call_command("token_key_add", stdout=StringIO())  # activates after TOKEN_KEY_ACTIVATE_AFTER_S
    published = [k["kid"] for k in anonymous.get("/customer/.well-known/jwks.json").json()["keys"]]
    still_old = login(anonymous, "aiko@example.com").json()["access_token"]
    settings.TOKEN_KEY_ACTIVATE_AFTER_S = 0
    new_token = login(anonymous, "aiko@example.com").json()["access_token"]

    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = jwt.get_unverified_header(new_token)["kid"]
    assert len(published) == 2 and old_kid in published and new_kid in published
    assert jwt.get_unverified_header(still_old)["kid"] == old_kid
    assert new_kid != old_kid
    for token in (old_token, new_token):
        assert (
            anonymous.get("/customer/auth/verify", HTTP_AUTHORIZATION=f"Bearer {token}").status_code
            == 204
        )


def test_a_replaced_key_is_pruned_once_its_tokens_have_expired(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    first = key_add(tmp_path, now=now - timedelta(hours=2))
    second = key_add(tmp_path, now=now - timedelta(hours=1))
    third = key_add(tmp_path, now=now - timedelta(seconds=30))
    ring = KeyRing.load(tmp_path, activate_after_s=120)

    assert ring.signing_key(now).kid == second.kid  # the newest is not active yet
    assert [k.kid for k in ring.retired(now, token_lifetime_s=900)] == [first.kid]
    assert third.kid in [k["kid"] for k in ring.jwks()["keys"]]


def test_token_check_gives_the_subject_and_scope(
    anonymous: APIClient, token_keys: Path, client_for: Callable[..., APIClient]
) -> None:
    customer_id = sign_up(anonymous).json()["id"]
    token = login(anonymous, "aiko@example.com").json()["access_token"]

    good = anonymous.get("/customer/auth/verify", HTTP_AUTHORIZATION=f"Bearer {token}")
    missing = anonymous.get("/customer/auth/verify")
    bad = anonymous.get("/customer/auth/verify", HTTP_AUTHORIZATION=f"Bearer {token[:-4]}AAAA")

    assert good.status_code == 204
    assert (good["X-Auth-Subject"], good["X-Auth-Scope"]) == (customer_id, "customer")
    assert (missing.status_code, missing.json()["code"]) == (401, "not_authenticated")
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert bad.status_code == 401 and 'error="invalid_token"' in bad["WWW-Authenticate"]


def test_a_customer_sees_only_their_own_record(
    anonymous: APIClient, as_customer: Callable[[uuid.UUID], APIClient], token_keys: Path
) -> None:
    mine = uuid.UUID(sign_up(anonymous).json()["id"])
    theirs = sign_up(anonymous, email="bo@example.com").json()["id"]
    me = as_customer(mine)

    assert me.get(f"/api/v1/customers/{mine}").status_code == 200
    other = me.get(f"/api/v1/customers/{theirs}")
    unknown = me.get(f"/api/v1/customers/{uuid.uuid4()}")
    assert (other.status_code, other.json()["code"]) == (404, "not_found")
    assert other.json()["detail"] == f"Customer {theirs} does not exist."
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    for call in (
        me.get("/api/v1/customers"),
        me.post(f"/api/v1/customers/{theirs}/block"),
        me.post(f"/api/v1/customers/{mine}/unblock"),
    ):
        assert (call.status_code, call.json()["code"]) == (403, "forbidden")
    assert Customer.objects.get(pk=theirs).status == "active"


def test_without_a_token_only_sign_up_and_login_answer(
    anonymous: APIClient, token_keys: Path
) -> None:
    stale = APIClient()
    stale.credentials(HTTP_AUTHORIZATION="Bearer stale")
    customer_id = sign_up(stale).json()["id"]

    for response in (
        anonymous.get(f"/api/v1/customers/{customer_id}"),
        anonymous.get("/api/v1/customers"),
        anonymous.post(f"/api/v1/customers/{customer_id}/block"),
    ):
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"
        assert response["WWW-Authenticate"] == 'Bearer realm="cafe"'
    assert login(stale, "aiko@example.com").status_code == 200


def test_passwords_are_stored_as_argon2id(
    anonymous: APIClient, token_keys: Path, settings: Any
) -> None:
    from django.conf import global_settings

    settings.PASSWORD_HASHERS = [
        "common.auth.hashers.Argon2idHasher",
        *global_settings.PASSWORD_HASHERS,
    ]
    sign_up(anonymous)

    stored = Customer.objects.get().password
    assert stored.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored
    assert login(anonymous, "aiko@example.com").status_code == 200
