from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from common.idempotency.models import IdempotencyRecord
from common.idempotency.services import idempotency_prune, request_fingerprint


def test_fingerprint_ignores_key_order_but_not_values_or_path() -> None:
    base = request_fingerprint(method="POST", path="/a", data={"x": 1, "y": [1, 2]})

    assert base == request_fingerprint(method="POST", path="/a", data={"y": [1, 2], "x": 1})
    assert base != request_fingerprint(method="POST", path="/a", data={"x": 2, "y": [1, 2]})
    assert base != request_fingerprint(method="POST", path="/b", data={"x": 1, "y": [1, 2]})


@pytest.mark.django_db
def test_prune_deletes_only_expired_records_in_batches(settings: SettingsWrapper) -> None:
    settings.IDEMPOTENCY_RETENTION_HOURS = 24
    for n in range(7):
        IdempotencyRecord.objects.create(
            owner="customer:a",
            key=f"k{n}",
            fingerprint="f",
            method="POST",
            path="/p",
            status_code=202,
            response_body={},
        )
    expired = list(IdempotencyRecord.objects.values_list("pk", flat=True)[:5])
    IdempotencyRecord.objects.filter(pk__in=expired).update(
        created_at=timezone.now() - timedelta(hours=25)
    )

    assert idempotency_prune(batch_size=2) == 5

    assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {"k5", "k6"}
