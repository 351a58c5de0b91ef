"""Expected failures and their one translation to RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import sys
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
# When a client may try again after the database was unreachable (down, restarting, failing
# over) or broke the transaction off: about what a PostgreSQL restart takes.
UNAVAILABLE_RETRY_AFTER_S = 5
UNAVAILABLE_DETAIL = "The service cannot reach its database right now; nothing was changed."


class BusinessError(Exception):
    """An expected business failure: a machine-readable ``code`` and the HTTP status it maps to.

    Use-cases raise it; the API layer renders it. Nothing else decides how failures look.
    """

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int = 400,
        retry_after_s: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        # Sent as Retry-After: when a refused request (429, 503) may be tried again.
        self.retry_after_s = retry_after_s
        self.extra = extra


class NotFoundError(BusinessError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__("not_found", f"{what} {ident} does not exist.", status=404)


def problem(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


def problem_response(status: int, code: str, detail: str, **extra: Any) -> Response:
    return Response(
        problem(status, code, detail, **extra), status=status, content_type=PROBLEM_CONTENT_TYPE
    )


_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_request",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotFound: "not_found",
    exceptions.Throttled: "rate_limited",
    # DESIGN.md §7: a missing token and a bad one are both "not_authenticated".
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.PermissionDenied: "forbidden",
}


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: every expected error becomes problem+json."""
    # Imported here: DRF's settings import the authentication classes, which raise these errors,
    # while rest_framework.views is still loading.
    from rest_framework.views import set_rollback

    response = _to_problem(exc)
    if response is not None:
        set_rollback()
        request = context.get("request")
        if request is not None and isinstance(response.data, dict):
            response.data["instance"] = request.path
    return response


def database_unavailable(exc: BaseException | None) -> bool:
    """The database could not be reached or ended the transaction: the request's use-case
    committed nothing (it is one transaction), so the client can simply try again."""
    return isinstance(exc, OperationalError | InterfaceError)


def _to_problem(exc: Exception) -> Response | None:
    if database_unavailable(exc):
        response = problem_response(503, "unavailable", UNAVAILABLE_DETAIL)
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
        return response
    if isinstance(exc, BusinessError):
        response = problem_response(exc.status, exc.code, exc.detail, **exc.extra)
        if exc.retry_after_s is not None:
            response["Retry-After"] = str(exc.retry_after_s)
        if exc.status == 401:  # RFC 9110: a 401 names how to authenticate
            response["WWW-Authenticate"] = 'Bearer realm="cafe"'
        return response
    if isinstance(exc, Http404):
        return problem_response(404, "not_found", "Not found.")
    if isinstance(exc, RequestDataTooBig):
        return problem_response(413, "payload_too_large", "Request body is too large.")
    if isinstance(exc, PermissionDenied):
        return problem_response(403, "forbidden", "Permission denied.")
    if isinstance(exc, exceptions.ValidationError):
        return problem_response(
            400, "validation_error", "The request body or query is invalid.", errors=exc.detail
        )
    if isinstance(exc, exceptions.APIException):
        code = next(
            (c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)),
            str(exc.default_code),
        )
        response = problem_response(exc.status_code, code, str(exc.detail))
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            response["Retry-After"] = str(int(wait))
        # Set by DRF on 401s from the view's first authenticator (RFC 6750's challenge).
        challenge = getattr(exc, "auth_header", None)
        if challenge:
            if isinstance(exc, exceptions.AuthenticationFailed):
                challenge = f'{challenge}, error="invalid_token"'
            response["WWW-Authenticate"] = challenge
        return response
    return None


def _plain_problem(status: int, code: str, detail: str) -> HttpResponse:
    return JsonResponse(
        problem(status, code, detail), status=status, content_type=PROBLEM_CONTENT_TYPE
    )


# Django-level handlers, for requests that never reach a DRF view (unknown paths, crashes).
def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _plain_problem(400, "bad_request", "Bad request.")


def permission_denied_view(
    request: HttpRequest, exception: Exception | None = None
) -> HttpResponse:
    return _plain_problem(403, "forbidden", "Permission denied.")


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _plain_problem(404, "not_found", f"No resource at {request.path}.")


def server_error_view(request: HttpRequest) -> HttpResponse:
    # Django calls it while handling the exception, from a middleware as well as a view (a
    # session or login lookup with the database down): that one is not the server's fault.
    if database_unavailable(sys.exc_info()[1]):
        response = _plain_problem(503, "unavailable", UNAVAILABLE_DETAIL)
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
        return response
    return _plain_problem(500, "internal_error", "The server failed to handle the request.")
