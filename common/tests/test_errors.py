"""Every expected failure renders as RFC 9457 problem+json with a machine-readable code."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404
from django.test import RequestFactory
from rest_framework import exceptions

from common.api.errors import (
    PROBLEM_CONTENT_TYPE,
    BusinessError,
    problem_exception_handler,
    server_error_view,
)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (BusinessError("email_taken", "taken", status=409), 409, "email_taken"),
        (Http404(), 404, "not_found"),
        (RequestDataTooBig(), 413, "payload_too_large"),
        (exceptions.ValidationError({"amount": ["bad"]}), 400, "validation_error"),
        (exceptions.ParseError(), 400, "malformed_request"),
        (exceptions.MethodNotAllowed("PUT"), 405, "method_not_allowed"),
        (exceptions.UnsupportedMediaType("text/plain"), 415, "unsupported_media_type"),
        (exceptions.Throttled(wait=3), 429, "rate_limited"),
        (OperationalError("connection refused"), 503, "unavailable"),
        (InterfaceError("connection already closed"), 503, "unavailable"),
    ],
)
def test_expected_failures_become_problems(exc: Exception, status: int, code: str) -> None:
    response = problem_exception_handler(exc, {})

    assert response is not None
    assert response.status_code == status
    assert response.content_type == PROBLEM_CONTENT_TYPE
    assert response.data["code"] == code
    assert response.data["status"] == status
    assert {"type", "title", "detail"} <= set(response.data)


def test_validation_problem_lists_the_fields() -> None:
    response = problem_exception_handler(exceptions.ValidationError({"amount": ["too big"]}), {})

    assert response is not None
    assert response.data["errors"] == {"amount": ["too big"]}


def test_unexpected_errors_are_left_to_the_server_error_handler() -> None:
    assert problem_exception_handler(RuntimeError("boom"), {}) is None


def test_a_database_that_cannot_be_reached_is_a_503_to_try_again() -> None:
    response = problem_exception_handler(OperationalError("server closed the connection"), {})

    assert response is not None
    assert response["Retry-After"] == "5"


def test_the_server_error_handler_tells_a_database_outage_from_a_crash() -> None:
    request = RequestFactory().get("/api/v1/customers")
    try:
        raise OperationalError("the database system is shutting down")  # as in a middleware
    except OperationalError:
        outage = server_error_view(request)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        crash = server_error_view(request)

    assert (outage.status_code, outage["Retry-After"]) == (503, "5")
    assert json.loads(outage.content)["code"] == "unavailable"
    assert crash.status_code == 500
    assert json.loads(crash.content)["code"] == "internal_error"
