"""HTTP API of the orchestrator: start checkouts and cancellations, and follow them."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.schema import IDEMPOTENCY_KEY_PARAMETER, PROBLEM_RESPONSES
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


def _accepted(body: object, location: str) -> Response:
    response = Response(body, status=status.HTTP_202_ACCEPTED)
    response["Location"] = location
    return response


class CheckoutItemSerializer(serializers.Serializer[None]):
    menu_item_id = serializers.IntegerField(min_value=1, max_value=INT32_MAX)
    quantity = serializers.IntegerField(min_value=1, max_value=99)


class CheckoutCollectionApi(APIView):
    class InputSerializer(serializers.Serializer[None]):
        customer_id = serializers.UUIDField()
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
        saga = checkout_start(**data.validated_data)
        return _accepted(CheckoutOutputSerializer(saga).data, f"/api/v1/checkouts/{saga.id}")


class CheckoutDetailApi(APIView):
    @extend_schema(responses={200: CheckoutOutputSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, checkout_id: uuid.UUID) -> Response:
        saga = saga_get(saga_id=checkout_id, saga_type=Saga.Type.PLACE_ORDER)
        return Response(CheckoutOutputSerializer(saga).data)


class CancellationCollectionApi(APIView):
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
        saga = cancellation_start(**data.validated_data)
        return _accepted(
            CancellationOutputSerializer(saga).data, f"/api/v1/cancellations/{saga.id}"
        )


class CancellationDetailApi(APIView):
    @extend_schema(responses={200: CancellationOutputSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, cancellation_id: uuid.UUID) -> Response:
        saga = saga_get(saga_id=cancellation_id, saga_type=Saga.Type.CANCEL_ORDER)
        return Response(CancellationOutputSerializer(saga).data)
