"""OpenAPI pieces every service's API declares the same way."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name="Idempotency-Key",
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "At most 255 characters. The same key with the same body returns the first response "
        "and has no second effect; with a different body it is refused with 422."
    ),
)


@extend_schema_field(
    {
        "type": "object",
        "description": (
            "A 400's errors by field: a list of messages, or, for a list of objects such as "
            "`items`, the list's own messages under `non_field_errors` and each failing "
            "entry's field errors keyed by its index."
        ),
        "additionalProperties": {
            "oneOf": [
                {"type": "array", "items": {"type": "string"}},
                {
                    "type": "object",
                    "additionalProperties": {
                        "oneOf": [
                            {"type": "array", "items": {"type": "string"}},
                            {"type": "object"},
                        ]
                    },
                },
            ]
        },
        "example": {"customer_id": ["Must be a valid UUID."]},
    }
)
class FieldErrors(serializers.JSONField):
    """The ``errors`` member of a validation problem (DRF's ``ValidationError.detail``)."""


Problem = inline_serializer(
    name="Problem",
    fields={
        "type": serializers.CharField(),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "code": serializers.CharField(),
        "instance": serializers.CharField(required=False),
        "errors": FieldErrors(required=False),
    },
)

PROBLEM_CONTENT_TYPE = "application/problem+json"

# Errors are RFC 9457 problems, served as application/problem+json (common.api.errors).
PROBLEM_RESPONSES: dict[int | tuple[int, str], Any] = {
    (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(Problem, description=description)
    for code, description in {
        400: "Invalid input",
        401: "A valid bearer token is required",
        403: "Not allowed for this caller",
        404: "Unknown id",
        409: "Conflict with the current state",
        422: "Idempotency-Key reused with a different request",
        429: "Too many requests; see Retry-After",
        # `unavailable` (a database the service needs is down) on any call; `overloaded`
        # (admission control) on a checkout or cancellation. Either way nothing was started.
        503: "Unavailable or overloaded for now, nothing was done; try again after Retry-After",
    }.items()
}


def paginated(serializer: type[serializers.Serializer[Any]]) -> Any:
    """The schema of a page of ``serializer``'s objects (common.api.pagination.Pagination)."""
    name = serializer.__name__.removesuffix("Serializer")
    return inline_serializer(
        name=f"Paginated{name}List",
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer(many=True),
        },
    )


class BearerScheme(OpenApiAuthenticationExtension):
    """Every protected operation takes a bearer JWT (Swagger UI's "Authorize" button)."""

    target_class = "common.auth.drf.BearerAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from POST /api/v1/tokens.",
        }
