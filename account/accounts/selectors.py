"""Read queries of the account service."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from account.accounts.models import Account, LedgerEntry
from common.api.errors import NotFoundError


def account_get(*, customer_id: uuid.UUID) -> Account:
    account = Account.objects.filter(pk=customer_id).first()
    if account is None:
        raise NotFoundError("Account", customer_id)
    return account


def entry_list(*, customer_id: uuid.UUID) -> QuerySet[LedgerEntry]:
    account_get(customer_id=customer_id)
    return LedgerEntry.objects.filter(account_id=customer_id).order_by("-created_at", "-id")
