"""HTTP API of the orchestrator: start checkouts and cancellations, and follow them."""

from __future__ import annotations

import uuid
from datetime import datetime

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.schema import IDEMPOTENCY_KEY_PARAMETER, PROBLEM_RESPONSES
from common.auth.drf import actor
from common.idempotency.views import idempotent
from orchestrator.sagas.models import Saga
from orchestrator.sagas.selectors import saga_get
from orchestrator.sagas.services import cancellation_start, checkout_start

INT32_MAX = 2**31 - 1


class StepOutputSerializer(serializers.Serializer[dict[str, object]]):
    name = serializers.CharField()
    state = serializers.CharField()
    attempts = serializers.IntegerField()
    # Stored as ISO 8601 UTC strings already.
    started_at = serializers.CharField(allow_null=True)
    finished_at = serializers.CharField(allow_null=True)


class CheckoutOutputSerializer(serializers.ModelSerializer[Saga]):
    steps = StepOutputSerializer(many=True)

    class Meta:
        model = Saga
        fields = [
            "id",
            "order_id",
            "customer_id",
            "state",
            "reason",
            "steps",
            "created_at",
            "updated_at",
        ]


class CancellationOutputSerializer(serializers.ModelSerializer[Saga]):
    steps = StepOutputSerializer(many=True)

    class Meta:
        model = Saga
        fields = ["id", "order_id", "state", "reason", "steps", "created_at", "updated_at"]


def saga_body(saga: Saga, *, fields: list[str]) -> dict[str, object]:
    """What the output serializers above describe, built directly: on the hottest endpoint DRF's
    per-request copies of serializer fields cost more than the rest of the request."""
    values: dict[str, object] = {
        "id": str(saga.id),
        "order_id": str(saga.order_id),
        "customer_id": str(saga.customer_id) if saga.customer_id else None,
        "state": saga.state,
        "reason": saga.reason,
        "steps": [
            {k: step[k] for k in ("name", "state", "attempts", "started_at", "finished_at")}
            for step in saga.steps
        ],
        "created_at": _iso(saga.created_at),
        "updated_at": _iso(saga.updated_at),
    }
    return {name: values[name] for name in fields}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


CHECKOUT_FIELDS = CheckoutOutputSerializer.Meta.fields
CANCELLATION_FIELDS = CancellationOutputSerializer.Meta.fields


def _accepted(body: object, location: str) -> Response:
    response = Response(body, status=status.HTTP_202_ACCEPTED)
    response["Location"] = location
    return response


class CheckoutItemSerializer(serializers.Serializer[None]):
    menu_item_id = serializers.IntegerField(min_value=1, max_value=INT32_MAX)
    quantity = serializers.IntegerField(min_value=1, max_value=99)


class CheckoutCollectionApi(APIView):
    # Named after the operation: every API's "InputSerializer" would be one component.
    @extend_schema_serializer(component_name="CheckoutStart")
    class InputSerializer(serializers.Serializer[None]):
        # A customer token's own id when omitted; an operator names the customer.
        customer_id = serializers.UUIDField(required=False)
        items = CheckoutItemSerializer(many=True, min_length=1, max_length=20)  # type: ignore[call-arg]

    @extend_schema(
        operation_id="checkouts_create",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={202: CheckoutOutputSerializer, **PROBLEM_RESPONSES},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        saga = checkout_start(
            actor=actor(request),
            customer_id=data.validated_data.get("customer_id"),
            items=data.validated_data["items"],
        )
        return _accepted(saga_body(saga, fields=CHECKOUT_FIELDS), f"/api/v1/checkouts/{saga.id}")


class CheckoutDetailApi(APIView):
    @extend_schema(responses={200: CheckoutOutputSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, checkout_id: uuid.UUID) -> Response:
        saga = saga_get(actor=actor(request), saga_id=checkout_id, saga_type=Saga.Type.PLACE_ORDER)
        return Response(saga_body(saga, fields=CHECKOUT_FIELDS))


class CancellationCollectionApi(APIView):
    @extend_schema_serializer(component_name="CancellationStart")
    class InputSerializer(serializers.Serializer[None]):
        order_id = serializers.UUIDField()

    @extend_schema(
        operation_id="cancellations_create",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={202: CancellationOutputSerializer, **PROBLEM_RESPONSES},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        saga = cancellation_start(actor=actor(request), order_id=data.validated_data["order_id"])
        return _accepted(
            saga_body(saga, fields=CANCELLATION_FIELDS), f"/api/v1/cancellations/{saga.id}"
        )


class CancellationDetailApi(APIView):
    @extend_schema(responses={200: CancellationOutputSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, cancellation_id: uuid.UUID) -> Response:
        saga = saga_get(
            actor=actor(request), saga_id=cancellation_id, saga_type=Saga.Type.CANCEL_ORDER
        )
        return Response(saga_body(saga, fields=CANCELLATION_FIELDS))
