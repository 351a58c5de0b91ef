"""Read queries of the orchestrator."""

from __future__ import annotations

import uuid

from common.api.errors import NotFoundError
from common.auth.principal import Principal
from orchestrator.sagas.models import Saga


def saga_get(*, actor: Principal, saga_id: uuid.UUID, saga_type: Saga.Type) -> Saga:
    """Another customer's checkout or cancellation answers exactly like one that does not exist."""
    saga = Saga.objects.filter(pk=saga_id, type=saga_type, **actor.owner_filter()).first()
    if saga is None:
        raise NotFoundError(
            "Checkout" if saga_type == Saga.Type.PLACE_ORDER else "Cancellation", saga_id
        )
    return saga
