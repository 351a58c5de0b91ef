"""Read queries of the order service."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from common.api.errors import NotFoundError
from order.orders.models import MenuItem, Order


def menu_list() -> QuerySet[MenuItem]:
    return MenuItem.objects.filter(available=True).order_by("id")


def order_get(*, order_id: uuid.UUID) -> Order:
    order = Order.objects.prefetch_related("lines").filter(pk=order_id).first()
    if order is None:
        raise NotFoundError("Order", order_id)
    return order


def order_list(*, customer_id: uuid.UUID | None = None) -> QuerySet[Order]:
    orders = Order.objects.prefetch_related("lines").order_by("-created_at", "id")
    if customer_id is not None:
        orders = orders.filter(customer_id=customer_id)
    return orders
