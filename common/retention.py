"""Deleting what has outlived its retention period: a small batch per transaction, oldest first,
so a prune never holds many locks or one long transaction while the service works."""

from __future__ import annotations

from collections.abc import Callable

from django.db import models, transaction


def prune_in_batches(rows: models.QuerySet[models.Model], *, order_by: str, batch_size: int) -> int:
    """Delete ``rows`` (already filtered to what has expired), ``batch_size`` at a time;
    returns how many. Each batch is chosen by primary key, so a row that stops matching
    meanwhile is not deleted by a later batch's choice."""
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(rows.order_by(order_by).values_list("pk", flat=True)[:batch_size])
            if not ids:
                return deleted
            deleted += rows.model._default_manager.filter(pk__in=ids).delete()[0]


def prune_until_done(batch: Callable[[], int]) -> int:
    """Run a batch deleter (one transaction, returns rows deleted) until it deletes nothing."""
    deleted = 0
    while count := batch():
        deleted += count
    return deleted
