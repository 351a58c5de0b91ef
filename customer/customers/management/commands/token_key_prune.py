"""Remove signing keys that no valid token can need any more (replaced longer ago than a token
lives)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from common.auth.keys import KeyRing, key_remove


class Command(BaseCommand):
    help = "Remove retired signing keys from TOKEN_KEYS_DIR."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.TOKEN_KEYS_DIR:
            raise CommandError("TOKEN_KEYS_DIR is not set")
        directory = Path(settings.TOKEN_KEYS_DIR)
        ring = KeyRing.load(directory, activate_after_s=settings.TOKEN_KEY_ACTIVATE_AFTER_S)
        retired = ring.retired(datetime.now(UTC), token_lifetime_s=settings.TOKEN_LIFETIME_S)
        for key in retired:
            key_remove(directory, key.kid)
            self.stdout.write(f"removed key {key.kid}")
        if not retired:
            self.stdout.write("no key to remove")
