"""The message contract between the services: every message type and its payload schema, once.

Commands name the service that handles them (``<service>.<verb>``); events name the service that
emits them (``<service>.<event>``) and list their subscribers. Each command is answered by one
reply, ``<command>.reply``, whose payload is a :class:`Reply`.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class Kind(enum.StrEnum):
    COMMAND = "command"
    REPLY = "reply"
    EVENT = "event"


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- customer ---------------------------------------------------------------------------------
class CustomerRegistered(Payload):
    customer_id: uuid.UUID
    name: str = Field(min_length=1, max_length=100)
    email: str = Field(min_length=3, max_length=254)


class CustomerVerify(Payload):
    customer_id: uuid.UUID


# --- account ----------------------------------------------------------------------------------
class AccountMovement(Payload):
    """A debit or refund of one order: the order id is its natural key."""

    customer_id: uuid.UUID
    order_id: uuid.UUID
    amount: PositiveInt


# --- order ------------------------------------------------------------------------------------
class OrderLine(Payload):
    menu_item_id: int
    quantity: int = Field(ge=1, le=99)


class OrderCreatePending(Payload):
    order_id: uuid.UUID
    customer_id: uuid.UUID
    items: list[OrderLine] = Field(min_length=1, max_length=20)


class OrderRef(Payload):
    order_id: uuid.UUID


class OrderReject(Payload):
    order_id: uuid.UUID
    # So that rejecting an order never created (its creation timed out) leaves a tombstone.
    customer_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=64)


# --- replies ----------------------------------------------------------------------------------
class Reply(Payload):
    """The answer to a command: success with a result, or a business failure with a reason."""

    ok: bool
    reason: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class MessageType:
    name: str
    kind: Kind
    payload: type[Payload]
    # commands: the service that handles it; events: the service that emits it
    service: str
    subscribers: tuple[str, ...] = field(default=())

    @property
    def reply_name(self) -> str:
        return reply_type(self.name)


def reply_type(command: str) -> str:
    return f"{command}.reply"


_COMMANDS = [
    MessageType("customer.verify", Kind.COMMAND, CustomerVerify, "customer"),
    MessageType("account.debit", Kind.COMMAND, AccountMovement, "account"),
    MessageType("account.refund", Kind.COMMAND, AccountMovement, "account"),
    MessageType("order.create_pending", Kind.COMMAND, OrderCreatePending, "order"),
    MessageType("order.approve", Kind.COMMAND, OrderRef, "order"),
    MessageType("order.reject", Kind.COMMAND, OrderReject, "order"),
    MessageType("order.begin_cancel", Kind.COMMAND, OrderRef, "order"),
    MessageType("order.confirm_cancel", Kind.COMMAND, OrderRef, "order"),
    MessageType("order.undo_cancel", Kind.COMMAND, OrderRef, "order"),
]
_EVENTS = [
    MessageType(
        "customer.registered", Kind.EVENT, CustomerRegistered, "customer", subscribers=("account",)
    ),
]

MESSAGES: Final[dict[str, MessageType]] = {
    **{m.name: m for m in _COMMANDS},
    **{m.reply_name: MessageType(m.reply_name, Kind.REPLY, Reply, m.service) for m in _COMMANDS},
    **{m.name: m for m in _EVENTS},
}


class UnknownMessageType(LookupError):
    pass


def message_type(name: str) -> MessageType:
    try:
        return MESSAGES[name]
    except KeyError:
        raise UnknownMessageType(name) from None
