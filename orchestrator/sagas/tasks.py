"""Periodic saga work, sent by the orchestrator's beat to its own queue."""

from __future__ import annotations

from celery import shared_task

from orchestrator.sagas.services import saga_sweep


# No task events: Flower's task list would be the sweep's (one a second), not the checkouts'.
@shared_task(name="sagas.sweep", acks_late=True, ignore_result=True, send_events=False)
def sweep() -> int:
    """Re-send or time out every command whose reply is overdue."""
    return saga_sweep()
