"""Read queries of the order service. Each takes the caller: what it may see is decided here."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from common.api.errors import NotFoundError
from common.auth.principal import Principal, forbidden
from order.orders.models import MenuItem, Order


def menu_list() -> QuerySet[MenuItem]:
    return MenuItem.objects.filter(available=True).order_by("id")


def order_get(*, actor: Principal, order_id: uuid.UUID) -> Order:
    """Another customer's order answers exactly like one that does not exist."""
    orders = Order.objects.prefetch_related("lines").filter(pk=order_id, **actor.owner_filter())
    order = orders.first()
    if order is None:
        raise NotFoundError("Order", order_id)
    return order


def order_list(*, actor: Principal, customer_id: uuid.UUID | None = None) -> QuerySet[Order]:
    """A customer's own orders (``customer_id`` may only name the caller); an operator's, all
    of them or one customer's."""
    if not actor.operator:
        if customer_id is not None and customer_id != actor.customer_id:
            raise forbidden("A customer may only list their own orders.")
        customer_id = actor.customer_id
    orders = Order.objects.prefetch_related("lines").order_by("-created_at", "id")
    if customer_id is not None:
        orders = orders.filter(customer_id=customer_id)
    return orders
