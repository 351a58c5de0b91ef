from __future__ import annotations

from django.db import models
from django.utils import timezone


class InboxMessage(models.Model):
    """A message this service has handled, recorded in the handler's own transaction.

    For a command it also keeps the reply, which is sent again if the command arrives again.
    """

    message_id = models.UUIDField(primary_key=True)
    type = models.CharField(max_length=100)
    source = models.CharField(max_length=50)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    reply = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "inbox_message"

    def __str__(self) -> str:
        return f"{self.type} {self.message_id}"


class DeadLetter(models.Model):
    """A message that could not be handled: kept with the error and its raw body, acknowledged."""

    class Reason(models.TextChoices):
        UNDECODABLE = "undecodable"
        CONTENT_TYPE = "content_type"
        UNKNOWN_TASK = "unknown_task"
        INVALID_ENVELOPE = "invalid_envelope"
        UNKNOWN_TYPE = "unknown_type"
        INVALID_PAYLOAD = "invalid_payload"
        NO_HANDLER = "no_handler"
        UNROUTABLE = "unroutable"  # valid, but refers to nothing here (e.g. a reply to no saga)
        HANDLER_ERROR = "handler_error"
        # Unsigned, badly signed, or off the contract's routes: never believed, never handled.
        FORGED = "forged"

    id = models.BigAutoField(primary_key=True)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    error = models.TextField()
    raw_body = models.TextField(blank=True)
    message_id = models.CharField(max_length=64, blank=True)
    type = models.CharField(max_length=100, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    retried_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "inbox_dead_letter"

    def __str__(self) -> str:
        return f"{self.reason}: {self.type or self.message_id or self.pk}"
