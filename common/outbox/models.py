from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxMessage(models.Model):
    """A message written in the same transaction as the change that caused it.

    One row per destination queue (an event has one row per subscriber, all with the same
    message id). The relay publishes ``pending`` rows and marks them ``sent``; a row that keeps
    failing becomes ``dead`` until an operator requeues it.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        DEAD = "dead"

    id = models.BigAutoField(primary_key=True)
    message_id = models.UUIDField()
    type = models.CharField(max_length=100)
    destination = models.CharField(max_length=50)
    envelope = models.JSONField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    available_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "outbox_message"
        indexes = [
            # The relay's claim scans only pending rows, in id order.
            models.Index(fields=["id"], condition=Q(status="pending"), name="outbox_pending_idx"),
            # Pruning scans only sent rows, oldest first.
            models.Index(fields=["sent_at"], condition=Q(status="sent"), name="outbox_sent_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["message_id", "destination"], name="outbox_one_row_per_destination"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} → {self.destination} ({self.status})"
