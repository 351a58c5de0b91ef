"""Write use-cases of the customer service. Nothing else writes Customer rows."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction

from common import clock
from common.api.errors import BusinessError, NotFoundError
from common.messaging.contract import CustomerRegistered
from common.outbox.services import outbox_event
from common.transactions import locked, use_case_atomic
from customer.customers.models import Customer


def _email_taken(email: str) -> BusinessError:
    return BusinessError("email_taken", f"The email {email} is already registered.", status=409)


def customer_register(*, name: str, email: str) -> Customer:
    with use_case_atomic():
        if Customer.objects.filter(email__iexact=email).exists():
            raise _email_taken(email)
        try:
            with transaction.atomic():
                customer = Customer.objects.create(id=clock.new_id(), name=name, email=email)
        except IntegrityError as exc:  # lost a race with a concurrent sign-up
            raise _email_taken(email) from exc
        outbox_event(
            "customer.registered",
            CustomerRegistered(customer_id=customer.id, name=customer.name, email=customer.email),
        )
    return customer


def customer_verify(*, customer_id: uuid.UUID) -> Customer:
    """Check that the customer may order: it exists and is not blocked.

    The row lock orders the check after (or before) a concurrent block, never in between.
    """
    with use_case_atomic():
        customer = locked(Customer, customer_id)
        if customer is None:
            raise BusinessError(
                "unknown_customer", f"Customer {customer_id} does not exist.", status=404
            )
        if customer.status == Customer.Status.BLOCKED:
            raise BusinessError(
                "customer_blocked", f"Customer {customer_id} is blocked.", status=409
            )
    return customer


def _customer_set_status(*, customer_id: uuid.UUID, status: Customer.Status) -> Customer:
    with use_case_atomic():
        customer = locked(Customer, customer_id)
        if customer is None:
            raise NotFoundError("Customer", customer_id)
        if customer.status != status:
            customer.status = status
            customer.updated_at = clock.now()
            customer.save(update_fields=["status", "updated_at"])
    return customer


def customer_block(*, customer_id: uuid.UUID) -> Customer:
    return _customer_set_status(customer_id=customer_id, status=Customer.Status.BLOCKED)


def customer_unblock(*, customer_id: uuid.UUID) -> Customer:
    return _customer_set_status(customer_id=customer_id, status=Customer.Status.ACTIVE)
