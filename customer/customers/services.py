"""Write use-cases of the customer service. Nothing else writes Customer rows."""

from __future__ import annotations

import uuid
from typing import Any, cast

from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from common import clock
from common.api.errors import BusinessError, NotFoundError
from common.auth.principal import Principal
from common.messaging.contract import CustomerRegistered
from common.outbox.services import outbox_event
from common.transactions import locked, use_case_atomic
from customer.customers.models import Customer


def _email_taken(email: str) -> BusinessError:
    return BusinessError("email_taken", f"The email {email} is already registered.", status=409)


def _password_hash(password: str, *, name: str, email: str) -> str:
    """Django's password validators, then its hasher (slow on purpose: run it outside any
    transaction, so no row or connection waits for it)."""
    try:
        # (The stubs expect a User; the validators only read the attributes they are told to.)
        validate_password(password, user=cast(Any, Customer(name=name, email=email)))
    except ValidationError as exc:
        raise BusinessError(
            "validation_error",
            "The request body or query is invalid.",
            errors={"password": list(exc.messages)},
        ) from exc
    return make_password(password)


def customer_register(*, name: str, email: str, password: str) -> Customer:
    hashed = _password_hash(password, name=name, email=email)
    with use_case_atomic():
        if Customer.objects.filter(email__iexact=email).exists():
            raise _email_taken(email)
        try:
            with transaction.atomic():
                customer = Customer.objects.create(
                    id=clock.new_id(), name=name, email=email, password=hashed
                )
        except IntegrityError as exc:  # lost a race with a concurrent sign-up
            raise _email_taken(email) from exc
        outbox_event(
            "customer.registered",
            CustomerRegistered(customer_id=customer.id, name=customer.name, email=customer.email),
        )
    return customer


def customer_set_password(*, email: str, password: str) -> Customer:
    """Set (or reset) a customer's password, e.g. for one registered before sign-up took one."""
    customer = Customer.objects.filter(email__iexact=email).first()
    if customer is None:
        raise NotFoundError("Customer", email)
    hashed = _password_hash(password, name=customer.name, email=customer.email)
    with use_case_atomic():
        customer = locked(Customer, customer.id) or customer
        customer.password = hashed
        customer.updated_at = clock.now()
        customer.save(update_fields=["password", "updated_at"])
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


def _customer_set_status(
    *, actor: Principal, customer_id: uuid.UUID, status: Customer.Status
) -> Customer:
    actor.require_operator()
    with use_case_atomic():
        customer = locked(Customer, customer_id)
        if customer is None:
            raise NotFoundError("Customer", customer_id)
        if customer.status != status:
            customer.status = status
            customer.updated_at = clock.now()
            customer.save(update_fields=["status", "updated_at"])
    return customer


def customer_block(*, actor: Principal, customer_id: uuid.UUID) -> Customer:
    """Blocked: the next checkout is rejected (``customer_blocked``) and logins are refused."""
    return _customer_set_status(
        actor=actor, customer_id=customer_id, status=Customer.Status.BLOCKED
    )


def customer_unblock(*, actor: Principal, customer_id: uuid.UUID) -> Customer:
    return _customer_set_status(actor=actor, customer_id=customer_id, status=Customer.Status.ACTIVE)
