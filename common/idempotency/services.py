"""Claiming a key and replaying its response.

The claim is an ``INSERT … ON CONFLICT DO NOTHING`` in the same transaction as the effect:
a concurrent request with the same key blocks on the unique index until the first commits,
then finds the stored response. If the first rolls back, the second runs the effect itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common.api.errors import BusinessError
from common.idempotency.models import IdempotencyRecord
from common.retention import prune_in_batches

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: Any
    location: str


def request_fingerprint(*, method: str, path: str, data: Any) -> str:
    canonical = json.dumps([method, path, data], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise BusinessError(
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} printable characters.",
        )
    return key


def idempotency_claim(*, owner: str, key: str, fingerprint: str) -> StoredResponse | None:
    """Take the key for this transaction, or return the response stored under it.

    Must run inside the transaction that performs the effect. A placeholder row is inserted;
    :func:`idempotency_store` fills it in before commit.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("idempotency_claim must run inside the effect's transaction")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {IdempotencyRecord._meta.db_table}
                (owner, key, fingerprint, method, path, status_code, response_body, location,
                 created_at)
            VALUES (%s, %s, %s, '', '', 0, 'null', '', now())
            ON CONFLICT (owner, key) DO NOTHING
            RETURNING id
            """,  # noqa: S608 — the table name is ours, values are parameters
            [owner, key, fingerprint],
        )
        if cursor.fetchone() is not None:
            return None
    record = IdempotencyRecord.objects.get(owner=owner, key=key)
    if record.fingerprint != fingerprint:
        raise BusinessError(
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request.",
            status=422,
        )
    return StoredResponse(record.status_code, record.response_body, record.location)


def idempotency_store(
    *, owner: str, key: str, method: str, path: str, status_code: int, body: Any, location: str
) -> None:
    IdempotencyRecord.objects.filter(owner=owner, key=key).update(
        method=method, path=path, status_code=status_code, response_body=body, location=location
    )


def idempotency_prune(*, batch_size: int | None = None) -> int:
    """Delete records older than the retention period, in small batches; returns rows deleted."""
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)
    return prune_in_batches(
        IdempotencyRecord.objects.filter(created_at__lt=cutoff),
        order_by="created_at",
        batch_size=batch_size or settings.PRUNE_BATCH_SIZE,
    )
