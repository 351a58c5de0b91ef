"""One envelope for every message, and its validation on send and on receipt."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common import clock
from common.messaging.contract import (
    Kind,
    Payload,
    Reply,
    message_type,
    reply_type,
    route_of,
    route_violation,
)
from common.messaging.signing import BadSignature, KeyRing

SCHEMA_VERSION = 1


class Correlation(BaseModel):
    """Which saga step (and which try of it) a command belongs to, and what a reply answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    saga_id: uuid.UUID | None = None
    step: str | None = None
    attempt: int | None = None
    in_reply_to: uuid.UUID | None = None


class Signature(BaseModel):
    """The sender's Ed25519 signature of the rest of the envelope (``common.messaging.signing``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kid: str = Field(min_length=1, max_length=64)
    sig: str = Field(min_length=1, max_length=128)


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID
    type: str = Field(min_length=3, max_length=100)
    kind: Kind
    version: int = SCHEMA_VERSION
    source: str
    destination: str | None = None
    reply_to: str | None = None
    created_at: datetime
    correlation: Correlation = Correlation()
    # Tracing: the message or request that caused this one, and the trace it belongs to.
    headers: dict[str, str] = Field(default_factory=dict)
    payload: dict[str, Any]
    # Set by the outbox as the envelope is written for one queue; required on receipt.
    signature: Signature | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class InvalidMessage(ValueError):
    """A message that can never be handled: undecodable, of an unknown type, or off-schema."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# The message being handled (or the HTTP request id being served) in this context, so that
# every message written meanwhile records what caused it.
_cause: ContextVar[dict[str, str] | None] = ContextVar("message_cause", default=None)


@contextmanager
def caused_by(**headers: str) -> Iterator[None]:
    token = _cause.set({k: v for k, v in headers.items() if v})
    try:
        yield
    finally:
        _cause.reset(token)


def current_cause() -> dict[str, str]:
    """The headers set by the innermost ``caused_by``: what the work being done now is for."""
    return dict(_cause.get() or {})


def causation_of(envelope: Envelope) -> dict[str, str]:
    """Headers that a message caused by ``envelope`` carries."""
    inherited = {k: v for k, v in envelope.headers.items() if k in {"trace_id", "request_id"}}
    return {
        **inherited,
        "causation_id": str(envelope.id),
        "trace_id": inherited.get("trace_id", str(envelope.id)),
    }


def _checked(type_name: str, kind: Kind, payload: Payload) -> dict[str, Any]:
    spec = message_type(type_name)
    if spec.kind is not kind or not isinstance(payload, spec.payload):
        raise TypeError(f"{type_name} is a {spec.kind} carrying {spec.payload.__name__}")
    return payload.model_dump(mode="json")


def new_command(
    type_name: str, payload: Payload, *, source: str, correlation: Correlation | None = None
) -> Envelope:
    spec = message_type(type_name)
    return Envelope(
        id=clock.new_id(),
        type=type_name,
        kind=Kind.COMMAND,
        source=source,
        destination=spec.service,
        reply_to=source,
        created_at=clock.now(),
        correlation=correlation or Correlation(),
        headers=current_cause(),
        payload=_checked(type_name, Kind.COMMAND, payload),
    )


def new_event(type_name: str, payload: Payload, *, source: str) -> Envelope:
    return Envelope(
        id=clock.new_id(),
        type=type_name,
        kind=Kind.EVENT,
        source=source,
        created_at=clock.now(),
        headers=current_cause(),
        payload=_checked(type_name, Kind.EVENT, payload),
    )


def new_reply(command: Envelope, reply: Reply, *, source: str) -> Envelope:
    type_name = reply_type(command.type)
    # reply_to becomes a Redis queue name: only ever one the contract names.
    destination = command.reply_to or command.source
    if destination not in route_of(message_type(type_name)).recipients:
        raise ValueError(f"{type_name} cannot be sent to {destination!r}")
    return Envelope(
        id=clock.new_id(),
        type=type_name,
        kind=Kind.REPLY,
        source=source,
        destination=destination,
        created_at=clock.now(),
        correlation=command.correlation.model_copy(update={"in_reply_to": command.id}),
        headers=causation_of(command),
        payload=reply.model_dump(mode="json"),
    )


def decode(
    raw: str | bytes, *, receiver: str | None = None, keys: KeyRing | None = None
) -> tuple[Envelope, Payload]:
    """Parse, authenticate and validate a message received by ``receiver`` (by default this
    service); raise :class:`InvalidMessage` if it never can be handled.

    The signature is checked first, on the parsed document, before any field is believed; then
    the envelope and payload schemas; then the contract's route (who may send this type to
    whom). A bad or missing signature or a message off its route is ``forged``.
    """
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage("undecodable", f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidMessage("invalid_envelope", "an envelope is a JSON object")
    try:
        (keys or _service_keys()).verify(document)
    except BadSignature as exc:
        raise InvalidMessage("forged", str(exc)) from None
    try:
        envelope = Envelope.model_validate(document)
    except ValidationError as exc:
        raise InvalidMessage("invalid_envelope", str(exc)) from exc
    try:
        spec = message_type(envelope.type)
    except LookupError:
        raise InvalidMessage("unknown_type", f"no message type {envelope.type!r}") from None
    if spec.kind is not envelope.kind:
        raise InvalidMessage(
            "invalid_envelope", f"{envelope.type} is a {spec.kind}, not a {envelope.kind}"
        )
    violation = route_violation(
        spec,
        source=envelope.source,
        destination=envelope.destination,
        reply_to=envelope.reply_to,
        receiver=receiver or _service_name(),
    )
    if violation is not None:
        raise InvalidMessage("forged", violation)
    try:
        payload = spec.payload.model_validate(envelope.payload)
    except ValidationError as exc:
        raise InvalidMessage("invalid_payload", str(exc)) from exc
    return envelope, payload


def _service_keys() -> KeyRing:
    from common.messaging.keys import key_ring

    return key_ring()


def _service_name() -> str:
    from django.conf import settings

    return str(settings.SERVICE_NAME)
