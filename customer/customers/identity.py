"""Logging in: credentials to a principal, and the principal to a signed access token.

Customers log in with their email (case-insensitive), operators — the customer service's staff
users, such as the admin user ``make up`` creates — with their username.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password

from common.api.errors import BusinessError
from common.auth.issue import IssuedToken, access_token_issue
from common.auth.principal import Principal
from common.auth.verify import bundled_keys
from customer.customers.models import Customer


def _invalid() -> BusinessError:
    return BusinessError("invalid_credentials", "Wrong username or password.", status=401)


def credentials_check(*, username: str, password: str) -> Principal:
    """The principal these credentials name, or ``invalid_credentials``; a blocked customer with
    the right password gets ``customer_blocked``."""
    user = get_user_model().objects.filter(username=username, is_active=True, is_staff=True).first()
    if user is not None:
        if not user.check_password(password):
            raise _invalid()
        return Principal.for_operator(user.get_username())
    customer = Customer.objects.filter(email__iexact=username).first()
    if customer is None or not customer.password:
        # Hash anyway, so that an unknown username takes as long as a wrong password.
        make_password(password)
        raise _invalid()
    if not check_password(password, customer.password):
        raise _invalid()
    if customer.status == Customer.Status.BLOCKED:
        raise BusinessError("customer_blocked", "This customer is blocked.", status=403)
    return Principal.for_customer(customer.id)


def token_for(principal: Principal) -> IssuedToken:
    keys = bundled_keys()
    if keys is None:
        raise BusinessError(
            "tokens_unavailable",
            "This identity provider has no signing key (TOKEN_KEYS_DIR).",
            status=503,
        )
    return access_token_issue(
        ring=keys.ring(),
        issuer=settings.TOKEN_ISSUER,
        audience=settings.OIDC_AUDIENCE,
        subject=principal.subject,
        scopes=sorted(principal.scopes),
        lifetime_s=settings.TOKEN_LIFETIME_S,
        now=datetime.now(UTC),
    )


def jwks() -> dict[str, object]:
    """Every key in the directory, read afresh: verifiers fetch this rarely, and a key added
    by rotation must be published at once."""
    keys = bundled_keys()
    return keys.ring(fresh=True).jwks() if keys is not None else {"keys": []}


def discovery() -> dict[str, object]:
    """An OpenID-style discovery document for the bundled provider."""
    issuer = settings.TOKEN_ISSUER
    base = issuer.removesuffix("/customer")
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": f"{base}/api/v1/tokens",
        "grant_types_supported": ["password"],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "scopes_supported": ["customer", settings.OIDC_OPERATOR_SCOPE],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id"],
        "access_token_signing_alg_values_supported": ["ES256"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }
