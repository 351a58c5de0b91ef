from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Account(models.Model):
    """One per customer, opened from the ``customer.registered`` event."""

    customer_id = models.UUIDField(primary_key=True)
    balance = models.BigIntegerField(default=0, help_text="Integer yen")
    currency = models.CharField(max_length=3, default="JPY", editable=False)
    opened_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # The last line of defence: no code path can leave a balance below zero.
            models.CheckConstraint(
                condition=Q(balance__gte=0), name="account_balance_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"account {self.customer_id}: {self.balance} {self.currency}"


class LedgerEntry(models.Model):
    """Append-only: every change of a balance is one entry; entries are never edited."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit"
        CHARGE = "charge"
        REFUND = "refund"

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    amount = models.BigIntegerField(help_text="Signed integer yen: charges are negative")
    order_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="entry_account_newest_idx")
        ]
        constraints = [
            # Natural keys of the saga commands: one charge and one refund per order, ever.
            models.UniqueConstraint(
                fields=["order_id"], condition=Q(kind="charge"), name="entry_one_charge_per_order"
            ),
            models.UniqueConstraint(
                fields=["order_id"], condition=Q(kind="refund"), name="entry_one_refund_per_order"
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind="deposit", amount__gt=0, order_id__isnull=True)
                    | Q(kind="charge", amount__lt=0, order_id__isnull=False)
                    | Q(kind="refund", amount__gt=0, order_id__isnull=False)
                ),
                name="entry_sign_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} on {self.account_id}"


class OrderPayment(models.Model):
    """What happened to one order's money. The order id is the natural key of debit and refund:
    one charge per order, one refund per order, and no charge after a refund or a void."""

    class State(models.TextChoices):
        CHARGED = "charged"
        REFUNDED = "refunded"
        # Refunded before any charge arrived (a debit that timed out): a late debit is refused.
        VOIDED = "voided"

    order_id = models.UUIDField(primary_key=True)
    customer_id = models.UUIDField(db_index=True)
    amount = models.BigIntegerField(help_text="Integer yen charged (0 when voided)")
    state = models.CharField(max_length=8, choices=State.choices)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_amount_not_negative")
        ]

    def __str__(self) -> str:
        return f"order {self.order_id}: {self.state} {self.amount}"
