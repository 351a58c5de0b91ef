"""Read queries of the account service. Each takes the caller: what it may see is decided here."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from account.accounts.models import Account, LedgerEntry
from common.api.errors import NotFoundError
from common.auth.principal import Principal


def account_get(*, actor: Principal, customer_id: uuid.UUID) -> Account:
    """Another customer's account answers exactly like one that does not exist."""
    account = Account.objects.filter(pk=customer_id).first() if actor.owns(customer_id) else None
    if account is None:
        raise NotFoundError("Account", customer_id)
    return account


def entry_list(*, actor: Principal, customer_id: uuid.UUID) -> QuerySet[LedgerEntry]:
    account_get(actor=actor, customer_id=customer_id)
    return LedgerEntry.objects.filter(account_id=customer_id).order_by("-created_at", "-id")
