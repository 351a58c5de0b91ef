"""The message contract between the services: every message type and its payload schema, once.

Commands name the service that handles them (``<service>.<verb>``); events name the service that
emits them (``<service>.<event>``) and list their subscribers. Each command is answered by one
reply, ``<command>.reply``, whose payload is a :class:`Reply`.

It also says who may send each type to whom (:func:`route_of`): commands only from the
orchestrator to the service that handles them, replies only from that service back to the
orchestrator, events only from their emitter to their subscribers. A received message off its
route is forged (:func:`route_violation`).
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


# The only service that sends commands (and so the only queue a reply may go to).
COMMANDER: Final = "orchestrator"


@dataclass(frozen=True)
class Route:
    senders: tuple[str, ...]
    recipients: tuple[str, ...]
    # Where a reply may be sent: a command names one of these; other kinds name none.
    reply_to: tuple[str, ...] = ()


def route_of(spec: MessageType) -> Route:
    if spec.kind is Kind.COMMAND:
        return Route(senders=(COMMANDER,), recipients=(spec.service,), reply_to=(COMMANDER,))
    if spec.kind is Kind.REPLY:
        return Route(senders=(spec.service,), recipients=(COMMANDER,))
    return Route(senders=(spec.service,), recipients=spec.subscribers)


def route_violation(
    spec: MessageType,
    *,
    source: str,
    destination: str | None,
    reply_to: str | None,
    receiver: str,
) -> str | None:
    """Why a message of this type, so addressed and received by ``receiver``, is off its route
    (None if it is on it)."""
    route = route_of(spec)
    if source not in route.senders:
        return f"{spec.name} may be sent by {', '.join(route.senders)}, not {source!r}"
    if destination not in route.recipients:
        return f"{spec.name} may go to {', '.join(route.recipients)}, not {destination!r}"
    if destination != receiver:
        return f"addressed to {destination!r}, received by {receiver!r}"
    if route.reply_to and reply_to not in route.reply_to:
        return f"{spec.name} asks for replies at {reply_to!r}, not {', '.join(route.reply_to)}"
    if not route.reply_to and reply_to is not None:
        return f"a {spec.kind} names no reply_to, this one names {reply_to!r}"
    return None


class UnknownMessageType(LookupError):
    pass


def message_type(name: str) -> MessageType:
    try:
        return MESSAGES[name]
    except KeyError:
        raise UnknownMessageType(name) from None
