"""Make this service ready to start: its database exists, is migrated, and has an admin user."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "ensure_database + migrate + ensure_admin, in one process."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("ensure_database", stdout=self.stdout)
        call_command("migrate", interactive=False, verbosity=0, stdout=self.stdout)
        self.stdout.write("migrations applied")
        call_command("ensure_admin", stdout=self.stdout)
