"""A request's id reaches its log lines and its messages; its client is the gateway's word only."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from common.api.request_id import RequestIdFilter, RequestIdMiddleware, client_address
from common.messaging.envelope import current_cause

GATEWAY = ["127.0.0.1"]


def logged_request_id() -> str:
    """What the services' log format writes as request_id for a record made now."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "message", None, None)
    RequestIdFilter().filter(record)
    return logging.Formatter("%(request_id)s").format(record)


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("127.0.0.1", "10.1.2.3", "10.1.2.3"),
        # A client's own claim comes first; the gateway's entry is the last one.
        ("127.0.0.1", "203.0.113.9, 10.1.2.3", "10.1.2.3"),
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "not-an-address", "127.0.0.1"),
        # Not through the gateway: nobody else may say who the client is.
        ("10.9.9.9", "203.0.113.9", "10.9.9.9"),
    ],
)
def test_the_client_is_the_last_forwarded_address_only_from_a_trusted_proxy(
    peer: str, forwarded_for: str, client: str
) -> None:
    meta = {"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded_for}

    assert client_address(meta, GATEWAY) == client


def test_any_peer_is_trusted_with_a_star() -> None:
    meta = {"REMOTE_ADDR": "10.9.9.9", "HTTP_X_FORWARDED_FOR": "10.1.2.3"}

    assert client_address(meta, ["*"]) == "10.1.2.3"


def serve(request: HttpRequest) -> dict[str, Any]:
    """Run the middleware around a view that notes what it saw."""
    seen: dict[str, Any] = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen["cause"] = current_cause()
        seen["client"] = request.META["REMOTE_ADDR"]
        seen["logged"] = logged_request_id()
        return HttpResponse()

    RequestIdMiddleware(view)(request)
    return seen


def test_the_request_id_is_the_cause_of_messages_and_in_log_records() -> None:
    request = RequestFactory().get(
        "/", HTTP_X_REQUEST_ID="req-0001", HTTP_X_FORWARDED_FOR="10.1.2.3", REMOTE_ADDR="127.0.0.1"
    )

    seen = serve(request)

    assert seen["cause"] == {"request_id": "req-0001"}
    assert seen["logged"] == "req-0001"
    assert seen["client"] == "10.1.2.3"
    assert request.META["REQUEST_ID"] == "req-0001"  # for gunicorn's access log
    assert current_cause() == {}


def test_a_request_without_an_id_gets_one() -> None:
    seen = serve(RequestFactory().get("/"))

    assert len(seen["cause"]["request_id"]) == 32
    assert seen["logged"] == seen["cause"]["request_id"]


@pytest.mark.parametrize(
    "sent",
    [
        "short",
        "x" * 65,
        'abc12345" level=ERROR forged="yes',
        "abc12345\nforged line",
        "abc 12345",
        "abc/12345",
        "ünïcode-id",
    ],
)
def test_a_malformed_request_id_is_replaced(sent: str) -> None:
    seen = serve(RequestFactory().get("/", HTTP_X_REQUEST_ID=sent))

    assert seen["cause"]["request_id"] != sent
    assert re.fullmatch(r"[0-9a-f]{32}", seen["cause"]["request_id"])


@pytest.mark.parametrize("sent", ["abcdefgh", "A.b_c-9" + "z" * 57, "gw-1f2e3d4c"])
def test_a_well_formed_request_id_is_kept(sent: str) -> None:
    assert serve(RequestFactory().get("/", HTTP_X_REQUEST_ID=sent))["cause"]["request_id"] == sent


def test_outside_a_request_the_log_says_so() -> None:
    assert logged_request_id() == "-"
