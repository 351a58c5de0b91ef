"""Open a customer's account by hand (normally the ``customer.registered`` event does it)."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from account.accounts.services import account_open


class Command(BaseCommand):
    help = "Open the account of a customer id; opening an open account changes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer_id", type=uuid.UUID)

    def handle(self, *args: Any, customer_id: uuid.UUID, **options: Any) -> None:
        account = account_open(customer_id=customer_id)
        self.stdout.write(
            f"account {account.customer_id} open, balance {account.balance} {account.currency}"
        )
