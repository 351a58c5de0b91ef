"""Create the operator account used to sign in to the admin, or bring its password up to date."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from common.settings.production import is_development

# A local development stack's admin password when none is given; production has no default.
DEVELOPMENT_PASSWORD = "admin"  # noqa: S105


class Command(BaseCommand):
    help = (
        "Create the admin user from ADMIN_USERNAME / ADMIN_PASSWORD, or set its password to "
        "ADMIN_PASSWORD if that changed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        development = is_development(os.environ)
        username = os.environ.get("ADMIN_USERNAME", "admin")
        password = os.environ.get("ADMIN_PASSWORD") or (DEVELOPMENT_PASSWORD if development else "")
        if not password:
            raise CommandError("ADMIN_PASSWORD is not set (outside a development stack it must be)")
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if not development:
            # The validators compare the password with the user's own attributes.
            try:
                validate_password(password, user=user or user_model(username=username))
            except ValidationError as refused:
                raise CommandError("ADMIN_PASSWORD: " + " ".join(refused.messages)) from refused
        if user is None:
            user_model.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(self.style.SUCCESS(f"admin user {username!r} created"))
        elif user.check_password(password):
            self.stdout.write(f"admin user {username!r} exists")
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(self.style.SUCCESS(f"admin user {username!r}: password changed"))
