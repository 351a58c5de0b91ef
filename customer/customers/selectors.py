"""Read queries of the customer service."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from common.api.errors import NotFoundError
from customer.customers.models import Customer


def customer_get(*, customer_id: uuid.UUID) -> Customer:
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        raise NotFoundError("Customer", customer_id)
    return customer


def customer_list() -> QuerySet[Customer]:
    return Customer.objects.order_by("-created_at", "id")
