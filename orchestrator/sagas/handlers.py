"""Messages the orchestrator handles: the reply to every participant command."""

from __future__ import annotations

from typing import Any

from common.inbox.handlers import HandlerTable
from common.messaging.contract import MESSAGES, Kind, Reply
from common.messaging.envelope import Envelope
from orchestrator.sagas.services import saga_on_reply


def on_reply(message: Envelope, payload: Reply) -> dict[str, Any] | None:
    saga_on_reply(message, payload)
    return None


HANDLERS: HandlerTable = {
    name: on_reply for name, spec in MESSAGES.items() if spec.kind is Kind.REPLY
}
