"""The one place that applies ``Idempotency-Key`` to a DRF view method."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import transaction
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.auth.principal import Principal
from common.idempotency.services import (
    idempotency_claim,
    idempotency_store,
    request_fingerprint,
    validate_key,
)

HEADER = "Idempotency-Key"
V = TypeVar("V", bound=APIView)
Handler = Callable[..., Response]


def caller_key(request: Request) -> str:
    """Whose key it is: the verified caller, or an anonymous caller's address (sign-up)."""
    user = request.user
    if isinstance(user, Principal):
        return user.key
    return f"anonymous:{request.META.get('REMOTE_ADDR', '')}"


def idempotent(method: Callable[..., Response]) -> Callable[..., Response]:
    """Make a POST handler honour ``Idempotency-Key``.

    The key claim, the effect and the stored response share one transaction, so a replay
    never sees a half-done request and a crash leaves no key without its effect.
    """

    @functools.wraps(method)
    def wrapper(view: APIView, request: Request, *args: Any, **kwargs: Any) -> Response:
        raw_key = request.headers.get(HEADER)
        if raw_key is None:
            return method(view, request, *args, **kwargs)
        key = validate_key(raw_key)
        owner = caller_key(request)
        fingerprint = request_fingerprint(
            method=request.method or "", path=request.path, data=request.data
        )
        with transaction.atomic():
            stored = idempotency_claim(owner=owner, key=key, fingerprint=fingerprint)
            if stored is not None:
                replay = Response(stored.body, status=stored.status_code)
                if stored.location:
                    replay["Location"] = stored.location
                replay["Idempotent-Replayed"] = "true"
                return replay
            response = method(view, request, *args, **kwargs)
            body = (
                json.loads(JSONRenderer().render(response.data))
                if response.data is not None
                else None
            )
            idempotency_store(
                owner=owner,
                key=key,
                method=request.method or "",
                path=request.path,
                status_code=response.status_code,
                body=body,
                location=response.get("Location", ""),
            )
            return response

    return wrapper
