"""Views around authentication: API views some of whose methods anyone may call, and the token
check a gateway that cannot verify tokens itself (Nginx's ``auth_request``) asks."""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from common.api.errors import PROBLEM_CONTENT_TYPE, problem
from common.auth.drf import REALM, bearer_token
from common.auth.verify import InvalidToken, KeysUnavailable, verifier


class AnonymousMethodsMixin(APIView):
    """A view some of whose methods anyone may call (DESIGN.md §7: the menu, sign-up, login):
    no authenticator and no permission runs for them, so a stale token never stops a sign-up or
    a login, and the schema marks them as needing no token."""

    anonymous_methods: ClassVar[frozenset[str]] = frozenset()

    def _anonymous(self) -> bool:
        request = getattr(self, "request", None)
        return request is not None and (request.method or "").upper() in self.anonymous_methods

    def get_authenticators(self) -> list[BaseAuthentication]:
        return [] if self._anonymous() else super().get_authenticators()

    def get_permissions(self) -> Any:
        return [AllowAny()] if self._anonymous() else super().get_permissions()


def _refused(status: int, code: str, detail: str, *, challenge: str) -> HttpResponse:
    response = JsonResponse(
        problem(status, code, detail), status=status, content_type=PROBLEM_CONTENT_TYPE
    )
    if challenge:
        response["WWW-Authenticate"] = challenge
    return response


def token_check(request: HttpRequest) -> HttpResponse:
    """``GET /<service>/auth/verify``: 204 with the verified subject and scope, else 401."""
    header = request.headers.get("Authorization", "")
    if not header:
        return _refused(
            401,
            "not_authenticated",
            "Authentication credentials were not provided.",
            challenge=REALM,
        )
    try:
        principal = verifier().verify(bearer_token(header))
    except InvalidToken as exc:
        return _refused(
            401,
            "not_authenticated",
            f"The access token is not valid: {exc}.",
            challenge=f'{REALM}, error="invalid_token"',
        )
    except KeysUnavailable:
        return _refused(
            503, "auth_unavailable", "Tokens cannot be verified right now.", challenge=""
        )
    response = HttpResponse(status=204)
    response["X-Auth-Subject"] = principal.subject
    response["X-Auth-Scope"] = " ".join(sorted(principal.scopes))
    return response
