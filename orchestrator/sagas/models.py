from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Saga(models.Model):
    """One run of a saga definition: its state, data and the command it waits on."""

    class Type(models.TextChoices):
        PLACE_ORDER = "place_order", "place order (checkout)"
        CANCEL_ORDER = "cancel_order", "cancel order"

    class State(models.TextChoices):
        RUNNING = "running"
        COMPENSATING = "compensating"
        COMPLETED = "completed"
        REJECTED = "rejected"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=20, choices=Type.choices)
    version = models.PositiveSmallIntegerField(help_text="Definition version this run started with")
    state = models.CharField(max_length=12, choices=State.choices)
    phase = models.CharField(max_length=10)
    current_step = models.PositiveSmallIntegerField(default=0)
    attempt = models.PositiveSmallIntegerField(default=0)
    data = models.JSONField(default=dict)
    reason = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 — the API says null
    order_id = models.UUIDField(db_index=True)
    customer_id = models.UUIDField(null=True, blank=True)
    # Each step's state, attempts and times, in definition order (the API's ``steps``). Kept in
    # the saga's row so that a transition is one UPDATE.
    steps = models.JSONField(default=list)
    # The command whose reply moves the saga on; any other reply is stale.
    outstanding_command_id = models.UUIDField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The deadline sweep reads only sagas still in flight.
            models.Index(
                fields=["deadline"],
                condition=Q(state__in=["running", "compensating"]),
                name="saga_due_idx",
            ),
            models.Index(fields=["type", "state", "-created_at"], name="saga_type_state_idx"),
            # Retention: the finished sagas, oldest first.
            models.Index(
                fields=["finished_at"],
                condition=Q(state__in=["completed", "rejected"]),
                name="saga_finished_idx",
            ),
            # A customer's sagas in flight, counted when a new one would start.
            models.Index(
                fields=["customer_id"],
                condition=Q(state__in=["running", "compensating"]),
                name="saga_customer_in_flight_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} ({self.state})"


class SagaEvent(models.Model):
    """Append-only history: every command sent, reply, timeout, retry, compensation, operator act."""

    id = models.BigAutoField(primary_key=True)
    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=30)
    step = models.CharField(max_length=40, blank=True)
    attempt = models.PositiveSmallIntegerField(null=True, blank=True)
    message_id = models.UUIDField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["saga", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S.%f} {self.kind} {self.step}"
