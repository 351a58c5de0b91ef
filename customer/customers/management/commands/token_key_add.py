"""Rotate the token signing key: add a new key to TOKEN_KEYS_DIR.

It is published in the JWKS at once and signs only TOKEN_KEY_ACTIVATE_AFTER_S later, so every
verifier knows it before the first token it signed arrives. Then run token_key_prune (it removes
the old key once every token it signed has expired).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.auth.keys import SUFFIX, key_add


class Command(BaseCommand):
    help = "Add a new ES256 signing key to TOKEN_KEYS_DIR (published now, signing later)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="only when the directory holds no key yet (a deployment's first start)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.TOKEN_KEYS_DIR:
            raise CommandError("TOKEN_KEYS_DIR is not set")
        directory = Path(settings.TOKEN_KEYS_DIR)
        if options["if_missing"] and any(directory.glob(f"*{SUFFIX}")):
            self.stdout.write(f"{directory} already holds a key")
            return
        key = key_add(directory)
        self.stdout.write(
            f"added key {key.kid}; it signs from {settings.TOKEN_KEY_ACTIVATE_AFTER_S:.0f} s on"
        )
