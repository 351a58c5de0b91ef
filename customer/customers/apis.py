"""HTTP API of the customer service: parse, call a use-case or selector, serialize."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.pagination import Pagination
from common.api.schema import IDEMPOTENCY_KEY_PARAMETER, PROBLEM_RESPONSES
from common.idempotency.views import idempotent
from customer.customers.models import Customer
from customer.customers.selectors import customer_get, customer_list
from customer.customers.services import customer_block, customer_register, customer_unblock


class CustomerOutputSerializer(serializers.ModelSerializer[Customer]):
    class Meta:
        model = Customer
        fields = ["id", "name", "email", "status", "created_at"]


class CustomerCollectionApi(APIView):
    class InputSerializer(serializers.Serializer[None]):
        name = serializers.CharField(min_length=1, max_length=100)
        email = serializers.EmailField(max_length=254)

    @extend_schema(
        operation_id="customers_list",
        responses={200: CustomerOutputSerializer(many=True), **PROBLEM_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(customer_list(), request, view=self)
        return paginator.get_paginated_response(CustomerOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="customers_create",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: CustomerOutputSerializer, **PROBLEM_RESPONSES},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer = customer_register(**data.validated_data)
        response = Response(CustomerOutputSerializer(customer).data, status=status.HTTP_201_CREATED)
        response["Location"] = f"/api/v1/customers/{customer.id}"
        return response


class CustomerDetailApi(APIView):
    @extend_schema(responses={200: CustomerOutputSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, customer_id: uuid.UUID) -> Response:
        return Response(CustomerOutputSerializer(customer_get(customer_id=customer_id)).data)


class CustomerBlockApi(APIView):
    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: CustomerOutputSerializer, **PROBLEM_RESPONSES},
    )
    @idempotent
    def post(self, request: Request, customer_id: uuid.UUID) -> Response:
        return Response(CustomerOutputSerializer(customer_block(customer_id=customer_id)).data)


class CustomerUnblockApi(APIView):
    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: CustomerOutputSerializer, **PROBLEM_RESPONSES},
    )
    @idempotent
    def post(self, request: Request, customer_id: uuid.UUID) -> Response:
        return Response(CustomerOutputSerializer(customer_unblock(customer_id=customer_id)).data)
