"""Read queries of the orchestrator."""

from __future__ import annotations

import uuid

from common.api.errors import NotFoundError
from orchestrator.sagas.models import Saga


def saga_get(*, saga_id: uuid.UUID, saga_type: Saga.Type) -> Saga:
    saga = Saga.objects.filter(pk=saga_id, type=saga_type).first()
    if saga is None:
        raise NotFoundError(
            "Checkout" if saga_type == Saga.Type.PLACE_ORDER else "Cancellation", saga_id
        )
    return saga
