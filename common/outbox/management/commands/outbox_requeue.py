"""Give dead outbox rows a fresh set of attempts, so the relay publishes them again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from common.outbox.services import outbox_requeue


class Command(BaseCommand):
    help = "Requeue dead outbox rows (all of them, or the ids given)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "ids", nargs="*", type=int, help="outbox row ids; none means every dead row"
        )

    def handle(self, *args: Any, ids: list[int], **options: Any) -> None:
        count = outbox_requeue(ids=ids or None)
        self.stdout.write(f"requeued {count} dead outbox row(s)")
