from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class Customer(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        BLOCKED = "blocked"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    email = models.EmailField(max_length=254)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # A Django password hash (django.contrib.auth.hashers); empty: cannot log in until one is set.
    password = models.CharField(max_length=128, blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [models.Index(fields=["-created_at", "id"], name="customer_created_idx")]
        constraints = [
            # Case-insensitive uniqueness is the database's job: two racing sign-ups cannot both win.
            models.UniqueConstraint(Lower("email"), name="customer_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"
