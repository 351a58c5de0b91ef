"""Set a customer's password (one registered before sign-up took a password cannot log in
until then)."""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.api.errors import BusinessError
from customer.customers.services import customer_set_password


class Command(BaseCommand):
    stealth_options = ("stdin",)
    help = "Set a customer's password: manage.py customer_set_password <email> [--password-stdin]"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["password_stdin"]:
            stdin = options.get("stdin") or sys.stdin
            password = stdin.read().rstrip("\n")
        else:
            password = getpass.getpass("New password: ")
        try:
            customer = customer_set_password(email=options["email"], password=password)
        except BusinessError as exc:
            raise CommandError(f"{exc.detail} {exc.extra.get('errors', '')}".strip()) from exc
        self.stdout.write(f"password set for customer {customer.id}")
