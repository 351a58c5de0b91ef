"""Operator actions on one saga from the shell: retry, resume or force-compensate."""

from __future__ import annotations

import getpass
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.api.errors import BusinessError
from orchestrator.sagas.services import OPERATOR_ACTIONS, saga_operator_action


class Command(BaseCommand):
    help = (
        "retry: send the current step again; resume: it took effect, go on; force_compensate: undo "
        "(up to the pivot only)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=sorted(OPERATOR_ACTIONS))
        parser.add_argument("saga_id", type=uuid.UUID)

    def handle(self, *args: Any, action: str, saga_id: uuid.UUID, **options: Any) -> None:
        try:
            saga = saga_operator_action(saga_id=saga_id, action=action, operator=getpass.getuser())
        except BusinessError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"saga {saga.id}: {saga.state}")
