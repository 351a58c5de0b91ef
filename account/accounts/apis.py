"""HTTP API of the account service: parse, call a use-case or selector, serialize."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from account.accounts.models import Account, LedgerEntry
from account.accounts.selectors import account_get, entry_list
from account.accounts.services import account_deposit
from common.api.pagination import Pagination
from common.api.schema import IDEMPOTENCY_KEY_PARAMETER, PROBLEM_RESPONSES, paginated
from common.auth.drf import actor
from common.idempotency.views import idempotent

MAX_DEPOSIT = 1_000_000_000


class AccountOutputSerializer(serializers.ModelSerializer[Account]):
    class Meta:
        model = Account
        fields = ["customer_id", "balance", "currency", "updated_at"]


class EntryOutputSerializer(serializers.ModelSerializer[LedgerEntry]):
    class Meta:
        model = LedgerEntry
        fields = ["id", "kind", "amount", "order_id", "created_at"]


class AccountDetailApi(APIView):
    @extend_schema(responses={200: AccountOutputSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, customer_id: uuid.UUID) -> Response:
        account = account_get(actor=actor(request), customer_id=customer_id)
        return Response(AccountOutputSerializer(account).data)


class DepositApi(APIView):
    # Named after the operation: every API's "InputSerializer" would be one component.
    @extend_schema_serializer(component_name="Deposit")
    class InputSerializer(serializers.Serializer[None]):
        amount = serializers.IntegerField(min_value=1, max_value=MAX_DEPOSIT)

    @extend_schema_serializer(component_name="DepositMade")
    class OutputSerializer(serializers.Serializer[dict[str, object]]):
        entry_id = serializers.IntegerField()
        customer_id = serializers.UUIDField()
        amount = serializers.IntegerField()
        balance = serializers.IntegerField()

    @extend_schema(
        operation_id="accounts_deposit",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: OutputSerializer, **PROBLEM_RESPONSES},
    )
    @idempotent
    def post(self, request: Request, customer_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        posted = account_deposit(
            actor=actor(request), customer_id=customer_id, amount=data.validated_data["amount"]
        )
        body = {
            "entry_id": posted.entry.id,
            "customer_id": customer_id,
            "amount": posted.entry.amount,
            "balance": posted.balance,
        }
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class EntryListApi(APIView):
    @extend_schema(responses={200: paginated(EntryOutputSerializer), **PROBLEM_RESPONSES})
    def get(self, request: Request, customer_id: uuid.UUID) -> Response:
        paginator = Pagination()
        entries = entry_list(actor=actor(request), customer_id=customer_id)
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(EntryOutputSerializer(page, many=True).data)
