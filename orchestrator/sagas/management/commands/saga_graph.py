"""Print every saga definition as a mermaid diagram (the README shows them)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from orchestrator.sagas.definitions import LATEST
from orchestrator.sagas.graph import mermaid


class Command(BaseCommand):
    help = "Print each saga definition (steps, compensations, pivot) as a mermaid flowchart."

    def handle(self, *args: Any, **options: Any) -> None:
        for definition in LATEST.values():
            self.stdout.write(
                f"### {definition.name} (v{definition.version})\n\n```mermaid\n{mermaid(definition)}```\n"
            )
