"""Generate a new message signing key pair for this service (the first one, or for a rotation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.messaging.keys import generate_key_pair


class Command(BaseCommand):
    help = (
        "Write <service>.<kid>.key to MESSAGE_SIGNING_KEYS_DIR and <service>.<kid>.pub to "
        "MESSAGE_VERIFY_KEYS_DIR. The service signs with its newest key once restarted; hand "
        "the .pub to every service first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kid", help="key id (default: the current UTC time)")
        parser.add_argument("--signing-dir", type=Path, default=None)
        parser.add_argument("--verify-dir", type=Path, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        service = settings.SERVICE_NAME
        try:
            private, public = generate_key_pair(
                service,
                signing_dir=options["signing_dir"] or Path(settings.MESSAGE_SIGNING_KEYS_DIR),
                verify_dir=options["verify_dir"] or Path(settings.MESSAGE_VERIFY_KEYS_DIR),
                kid=options["kid"],
            )
        except (ValueError, FileExistsError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(f"{service}: private key {private}, public key {public}")
        )
