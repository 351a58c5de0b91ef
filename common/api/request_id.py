"""Each request's id and client address, so a request can be followed from the gateway's log
through the service's log lines to every message it causes.

The gateway sends the id (``X-Request-Id``; one is made here when it is missing) and the client
address (the last ``X-Forwarded-For`` entry, which it overwrites). The address is only believed
from a trusted proxy: ``FORWARDED_ALLOW_IPS``, the variable gunicorn reads for the same purpose.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from common.messaging.envelope import caused_by, current_cause

# What a request id may look like; anything else a client sends is replaced by a fresh one, so
# an id can never carry a line break, a quote or a second log field.
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
# The WSGI environ key gunicorn's access log reads the id from (common.gunicorn_conf).
ENVIRON_KEY = "REQUEST_ID"


def client_address(meta: Mapping[str, Any], trusted_proxies: Collection[str]) -> str:
    """The peer's address, unless the peer is a trusted proxy: then the last X-Forwarded-For
    entry, the one that proxy wrote. Earlier entries are whatever a client claimed."""
    peer = str(meta.get("REMOTE_ADDR", ""))
    forwarded = str(meta.get("HTTP_X_FORWARDED_FOR", ""))
    if not forwarded or not ("*" in trusted_proxies or peer in trusted_proxies):
        return peer
    try:
        return str(ipaddress.ip_address(forwarded.rsplit(",", 1)[-1].strip()))
    except ValueError:
        return peer


def accepted_request_id(sent: str) -> str:
    """``sent`` if it is a well-formed request id, else a new one."""
    return sent if REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def request_client(request: HttpRequest) -> str:
    """The client address RequestIdMiddleware settled on (django-axes counts failures by it)."""
    return str(request.META.get("REMOTE_ADDR", ""))


class RequestIdMiddleware:
    """Serve the request inside ``caused_by(request_id=…)``, with REMOTE_ADDR set to the client.

    REMOTE_ADDR is rewritten in place: Django's request.META is the WSGI environ, which is also
    what gunicorn's access log reads after the response.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.trusted_proxies = frozenset(settings.FORWARDED_ALLOW_IPS)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = accepted_request_id(request.headers.get("X-Request-Id", ""))
        request.META[ENVIRON_KEY] = request_id
        request.META["REMOTE_ADDR"] = client_address(request.META, self.trusted_proxies)
        with caused_by(request_id=request_id):
            return self.get_response(request)


class RequestIdFilter(logging.Filter):
    """Give every log record a ``request_id``: of the HTTP request being served, or of the one
    that caused the message being handled; "-" when there is none."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_cause().get("request_id", "-")
        return True
