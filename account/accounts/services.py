"""Write use-cases of the account service. Balances change only here, one ledger entry each."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from account.accounts.models import Account, LedgerEntry
from common.api.errors import NotFoundError


@dataclass(frozen=True)
class Posted:
    entry: LedgerEntry
    balance: int


def account_open(*, customer_id: uuid.UUID) -> Account:
    """Open the customer's account; opening it again changes nothing."""
    with transaction.atomic():
        account, _ = Account.objects.get_or_create(customer_id=customer_id)
    return account


def _locked_account(customer_id: uuid.UUID) -> Account:
    account = Account.objects.select_for_update().filter(pk=customer_id).first()
    if account is None:
        raise NotFoundError("Account", customer_id)
    return account


def _post(
    account: Account, *, kind: LedgerEntry.Kind, amount: int, order_id: uuid.UUID | None
) -> Posted:
    now = timezone.now()
    account.balance += amount
    account.updated_at = now
    account.save(update_fields=["balance", "updated_at"])
    entry = LedgerEntry.objects.create(
        account=account, kind=kind, amount=amount, order_id=order_id, created_at=now
    )
    return Posted(entry=entry, balance=account.balance)


def account_deposit(*, customer_id: uuid.UUID, amount: int) -> Posted:
    with transaction.atomic():
        account = _locked_account(customer_id)
        return _post(account, kind=LedgerEntry.Kind.DEPOSIT, amount=amount, order_id=None)
