"""HTTP API of the order service: the menu and read access to orders."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.pagination import Pagination
from common.api.schema import PROBLEM_RESPONSES, paginated
from common.auth.drf import actor
from common.auth.views import AnonymousMethodsMixin
from order.orders.models import MenuItem, Order, OrderLine
from order.orders.selectors import menu_list, order_get, order_list


class MenuItemOutputSerializer(serializers.ModelSerializer[MenuItem]):
    class Meta:
        model = MenuItem
        fields = ["id", "name", "kind", "price"]


class OrderLineOutputSerializer(serializers.ModelSerializer[OrderLine]):
    class Meta:
        model = OrderLine
        fields = ["menu_item_id", "name", "quantity", "unit_price"]


class OrderOutputSerializer(serializers.ModelSerializer[Order]):
    items = OrderLineOutputSerializer(source="lines", many=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "customer_id",
            "items",
            "total",
            "state",
            "reason",
            "created_at",
            "updated_at",
        ]


class MenuApi(AnonymousMethodsMixin, APIView):
    anonymous_methods = frozenset({"GET", "HEAD"})

    @extend_schema(responses={200: MenuItemOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(MenuItemOutputSerializer(menu_list(), many=True).data)


class OrderListApi(APIView):
    class FilterSerializer(serializers.Serializer[None]):
        customer_id = serializers.UUIDField(required=False)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "customer_id",
                uuid.UUID,
                required=False,
                description="For a customer token: the caller (the default) and nobody else.",
            )
        ],
        responses={200: paginated(OrderOutputSerializer), **PROBLEM_RESPONSES},
        operation_id="orders_list",
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = Pagination()
        orders = order_list(actor=actor(request), **filters.validated_data)
        page = paginator.paginate_queryset(orders, request, view=self)
        return paginator.get_paginated_response(OrderOutputSerializer(page, many=True).data)


class OrderDetailApi(APIView):
    @extend_schema(responses={200: OrderOutputSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = order_get(actor=actor(request), order_id=order_id)
        return Response(OrderOutputSerializer(order).data)
