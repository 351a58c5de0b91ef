from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class MenuItem(models.Model):
    class Kind(models.TextChoices):
        FOOD = "food"
        DRINK = "drink"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=5, choices=Kind.choices)
    price = models.PositiveIntegerField(help_text="Integer yen")
    available = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(price__gt=0), name="menu_price_positive")]

    def __str__(self) -> str:
        return f"{self.name} ({self.price} JPY)"


class Order(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        CANCEL_PENDING = "cancel_pending"
        CANCELLED = "cancelled"

    # Assigned by the orchestrator when the checkout is accepted, so clients know it at once.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer_id = models.UUIDField()
    total = models.BigIntegerField(default=0, help_text="Integer yen")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    reason = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 — the API says null
    # The saga that holds the order's semantic lock while it is pending or cancel_pending.
    saga_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [models.Index(fields=["customer_id", "-created_at"], name="order_customer_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(total__gte=0), name="order_total_not_negative")
        ]

    def __str__(self) -> str:
        return f"order {self.id} ({self.state})"


class UndoneCancellation(models.Model):
    """A cancellation whose lock was undone (its saga compensated ``order.begin_cancel``).

    A try of its ``begin_cancel`` still on its way must not lock the order again once the saga
    has let go of it: nothing would ever release it. ``begin_cancel`` refuses a saga listed here.
    """

    saga_id = models.UUIDField(primary_key=True)
    order_id = models.UUIDField(db_index=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"cancellation {self.saga_id} of order {self.order_id}: undone"


class OrderLine(models.Model):
    """A line as ordered: name and unit price are copied so later menu changes do not rewrite it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    menu_item_id = models.IntegerField()
    name = models.CharField(max_length=100)
    quantity = models.PositiveSmallIntegerField()
    unit_price = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=1, quantity__lte=99), name="line_quantity_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.name}"
