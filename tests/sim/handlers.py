"""Each service's production handler table, wrapped: when the scheduler says so, the handler's
transaction dies after the handler ran and before it commits (its writes are rolled back)."""

from __future__ import annotations

from typing import Any

from account.accounts.handlers import HANDLERS as _ACCOUNT
from common.inbox.handlers import Handler, HandlerTable
from common.messaging.contract import Reply
from common.messaging.envelope import Envelope
from customer.customers.handlers import HANDLERS as _CUSTOMER
from orchestrator.sagas.handlers import HANDLERS as _ORCHESTRATOR
from order.orders.handlers import HANDLERS as _ORDER


class Crash(BaseException):
    """The worker died before its transaction committed. Not an ``Exception``: a worker's death
    is nothing the consumer catches and decides on (its transaction just never commits)."""


class CrashSwitch:
    armed = False


CRASH = CrashSwitch()


def _crashing(handler: Handler) -> Handler:
    def run(message: Envelope, payload: Any) -> dict[str, Any] | Reply | None:
        result = handler(message, payload)
        if CRASH.armed:
            CRASH.armed = False
            raise Crash(f"worker died handling {message.type} {message.id}")
        return result

    return run


def _wrapped(table: HandlerTable) -> HandlerTable:
    return {name: _crashing(handler) for name, handler in table.items()}


CUSTOMER = _wrapped(_CUSTOMER)
ACCOUNT = _wrapped(_ACCOUNT)
ORDER = _wrapped(_ORDER)
ORCHESTRATOR = _wrapped(_ORCHESTRATOR)
