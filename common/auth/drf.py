"""The services' side of authentication in DRF: one authentication class and one permission,
the defaults of every API view (``common.auth.views.AnonymousMethodsMixin`` for the exceptions).

Imported by DRF's settings while ``rest_framework.views`` loads: nothing here may import it.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from common.auth.principal import Principal
from common.auth.verify import InvalidToken, KeysUnavailable, verifier

REALM = 'Bearer realm="cafe"'


class InvalidTokenFailed(exceptions.AuthenticationFailed):
    """A token was sent but is not valid (RFC 6750 ``error="invalid_token"``)."""


class AuthUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "Tokens cannot be verified right now; try again shortly."
    default_code = "auth_unavailable"


def bearer_token(header: bytes | str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    raw = header.decode("latin-1") if isinstance(header, bytes) else header
    scheme, _, token = raw.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise InvalidToken("Authorization must be 'Bearer <token>'")
    return token


class BearerAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, str] | None:
        header = get_authorization_header(request)
        if not header:
            return None
        try:
            token = bearer_token(header)
            return verifier().verify(token), token
        except InvalidToken as exc:
            raise InvalidTokenFailed(f"The access token is not valid: {exc}.") from exc
        except KeysUnavailable as exc:
            raise AuthUnavailable() from exc

    def authenticate_header(self, request: Request) -> str:
        return REALM


class Authenticated(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Principal)


def actor(request: Request) -> Principal:
    """The caller of an authenticated view (the permission above has let only them in)."""
    user = request.user
    if not isinstance(user, Principal):
        raise exceptions.NotAuthenticated()
    return user
