"""HTTP API of the customer service: parse, call a use-case or selector, serialize."""

from __future__ import annotations

import uuid

import redis
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe
from django_ratelimit.core import get_usage
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.errors import BusinessError
from common.api.pagination import Pagination
from common.api.schema import IDEMPOTENCY_KEY_PARAMETER, PROBLEM_RESPONSES, paginated
from common.auth.drf import actor
from common.auth.keys import NoSigningKey
from common.auth.views import AnonymousMethodsMixin
from common.idempotency.views import idempotent
from customer.customers import identity
from customer.customers.models import Customer
from customer.customers.selectors import customer_get, customer_list
from customer.customers.services import customer_block, customer_register, customer_unblock


class CustomerOutputSerializer(serializers.ModelSerializer[Customer]):
    class Meta:
        model = Customer
        fields = ["id", "name", "email", "status", "created_at"]


class CustomerCollectionApi(AnonymousMethodsMixin, APIView):
    anonymous_methods = frozenset({"POST"})  # sign-up

    # Named after the operation: every API's "InputSerializer" would be one component.
    @extend_schema_serializer(component_name="SignUp")
    class InputSerializer(serializers.Serializer[None]):
        name = serializers.CharField(min_length=1, max_length=100)
        email = serializers.EmailField(max_length=254)
        password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)

    @extend_schema(
        operation_id="customers_list",
        description="Every customer (operators only).",
        responses={200: paginated(CustomerOutputSerializer), **PROBLEM_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        customers = customer_list(actor=actor(request))
        page = paginator.paginate_queryset(customers, request, view=self)
        return paginator.get_paginated_response(CustomerOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="customers_create",
        description="Sign up (anonymous). The password must pass the password validators.",
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
        customer = customer_get(actor=actor(request), customer_id=customer_id)
        return Response(CustomerOutputSerializer(customer).data)


class CustomerBlockApi(APIView):
    @extend_schema(
        request=None,
        description="Operators only.",
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: CustomerOutputSerializer, **PROBLEM_RESPONSES},
    )
    @idempotent
    def post(self, request: Request, customer_id: uuid.UUID) -> Response:
        customer = customer_block(actor=actor(request), customer_id=customer_id)
        return Response(CustomerOutputSerializer(customer).data)


class CustomerUnblockApi(APIView):
    @extend_schema(
        request=None,
        description="Operators only.",
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: CustomerOutputSerializer, **PROBLEM_RESPONSES},
    )
    @idempotent
    def post(self, request: Request, customer_id: uuid.UUID) -> Response:
        customer = customer_unblock(actor=actor(request), customer_id=customer_id)
        return Response(CustomerOutputSerializer(customer).data)


def _failures(request: HttpRequest, *, username: str, count: bool) -> None:
    """Refuse a login once a username or a client address has failed too often (counted with
    django-ratelimit in the shared cache: fixed windows, so a lock lifts by itself)."""
    windows = (
        (
            "login-user",
            lambda group, req: username.casefold(),
            settings.LOGIN_FAILURES_PER_USERNAME,
        ),
        ("login-address", "ip", settings.LOGIN_FAILURES_PER_ADDRESS),
    )
    try:
        for group, key, rate in windows:
            usage = get_usage(request, group=group, key=key, rate=rate, increment=count)
            if usage is not None and usage["count"] >= usage["limit"] and not count:
                raise BusinessError(
                    "too_many_attempts",
                    "Too many failed logins; wait before trying again.",
                    status=429,
                    retry_after_s=max(int(usage["time_left"]), 1),
                )
    except redis.RedisError as exc:
        raise BusinessError(
            "unavailable", "Logins cannot be checked right now.", status=503, retry_after_s=5
        ) from exc


class TokenApi(AnonymousMethodsMixin, APIView):
    anonymous_methods = frozenset({"POST"})

    # Named after the operation: every API's "InputSerializer" would be one component.
    @extend_schema_serializer(component_name="Credentials")
    class InputSerializer(serializers.Serializer[None]):
        username = serializers.CharField(max_length=254)
        password = serializers.CharField(max_length=128, trim_whitespace=False)

    @extend_schema_serializer(component_name="Token")
    class OutputSerializer(serializers.Serializer[dict[str, object]]):
        access_token = serializers.CharField()
        token_type = serializers.CharField()
        expires_in = serializers.IntegerField()

    @extend_schema(
        operation_id="tokens_create",
        description=(
            "Log in: a customer with their email, an operator with their username. Repeated "
            "failures for one username or client address are refused with 429 for a while."
        ),
        request=InputSerializer,
        responses={200: OutputSerializer, **PROBLEM_RESPONSES},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username, password = data.validated_data["username"], data.validated_data["password"]
        _failures(request._request, username=username, count=False)
        try:
            principal = identity.credentials_check(username=username, password=password)
        except BusinessError as refused:
            if refused.code == "invalid_credentials":
                _failures(request._request, username=username, count=True)
            raise
        token = identity.token_for(principal)
        body = {
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_in": token.expires_in,
        }
        response = Response(self.OutputSerializer(body).data)
        response["Cache-Control"] = "no-store"
        return response


@require_safe
def jwks_view(request: HttpRequest) -> JsonResponse:
    try:
        body = identity.jwks()
    except NoSigningKey:
        body = {"keys": []}
    response = JsonResponse(body)
    response["Cache-Control"] = "public, max-age=60"
    return response


@require_safe
def discovery_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(identity.discovery())
