from __future__ import annotations

from django.db import models


class IdempotencyRecord(models.Model):
    """The first response given to a request carrying an ``Idempotency-Key``."""

    # Keys belong to their caller (DESIGN.md §7): the same key from two callers is two keys.
    owner = models.CharField(max_length=100, default="", help_text="The caller, e.g. customer:<id>")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of method, path and body")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    location = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "idempotency record"
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="idempotency_owner_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.owner} {self.key}]"
