"""Read queries of the customer service. Each takes the caller: what it may see is decided here."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from common.api.errors import NotFoundError
from common.auth.principal import Principal
from customer.customers.models import Customer


def customer_get(*, actor: Principal, customer_id: uuid.UUID) -> Customer:
    customer = Customer.objects.filter(**actor.owner_filter("pk")).filter(pk=customer_id).first()
    if customer is None:
        raise NotFoundError("Customer", customer_id)
    return customer


def customer_list(*, actor: Principal) -> QuerySet[Customer]:
    actor.require_operator()
    return Customer.objects.order_by("-created_at", "id")
