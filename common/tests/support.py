"""Helpers for the messaging tests: the test broker, reading queues, building messages."""

from __future__ import annotations

import base64
import functools
import json
import uuid
from pathlib import Path
from typing import Any

import redis
from celery import states
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import transaction

from common.messaging.contract import AccountMovement, CustomerRegistered
from common.messaging.envelope import Correlation, Envelope, new_command, new_event
from common.messaging.keys import load_key_ring
from common.messaging.redis_acl import broker_keys
from common.messaging.signing import KeyRing, SigningKey
from common.outbox.services import outbox_put
from common.polling import wait_until
from common.testing import OPERATOR

__all__ = ["wait_until"]  # re-exported: the tests' one polling loop lives in common.polling


def broker() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def queued(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The envelopes waiting in a queue, oldest first (kombu pushes left, pops right; a task
    message carries one or more envelopes)."""
    envelopes = []
    for item in reversed(client.lrange(queue, 0, -1)):
        message = json.loads(item)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        envelopes += [json.loads(arg) for arg in args]
    return envelopes


def held(client: redis.Redis, service: str) -> int:
    """How many of ``service``'s messages its consumers hold unacknowledged: in their processing
    lists (common.messaging.broker), or in kombu's own unacknowledged set (``basic_get``)."""
    keys = broker_keys(service)
    lists = client.scan_iter(f"{keys['processing_prefix']}processing.*")
    return sum(int(client.llen(key)) for key in lists) + int(client.hlen(keys["unacked_key"]))


def debit_command(
    customer_id: uuid.UUID, amount: int, order_id: uuid.UUID | None = None
) -> Envelope:
    """An ``account.debit`` as the orchestrator sends it (so its reply goes to the orchestrator)."""
    return new_command(
        "account.debit",
        AccountMovement(customer_id=customer_id, order_id=order_id or uuid.uuid4(), amount=amount),
        source="orchestrator",
        correlation=Correlation(saga_id=uuid.uuid4(), step="debit", attempt=1),
    )


def registered_event(customer_id: uuid.UUID | None = None, name: str = "Ann") -> Envelope:
    """A customer.registered event, as the customer service sends it."""
    return new_event(
        "customer.registered",
        CustomerRegistered(
            customer_id=customer_id or uuid.uuid4(), name=name, email=f"{name.lower()}@example.com"
        ),
        source="customer",
    )


def funded_account(balance: int) -> uuid.UUID:
    """An open account of a new customer, holding ``balance`` yen."""
    from account.accounts.services import account_deposit, account_open

    customer_id = account_open(customer_id=uuid.uuid4()).customer_id
    account_deposit(actor=OPERATOR, customer_id=customer_id, amount=balance)
    return customer_id


@functools.cache
def _keys_of(service: str, signing_dir: str, verify_dir: str) -> KeyRing:
    return load_key_ring(service, signing_dir=Path(signing_dir), verify_dir=Path(verify_dir))


def keys_of(service: str) -> KeyRing:
    """The key ring ``service`` has in this test run (every service's key is on this machine)."""
    return _keys_of(
        service, str(settings.MESSAGE_SIGNING_KEYS_DIR), str(settings.MESSAGE_VERIFY_KEYS_DIR)
    )


def signed(document: dict[str, Any], *, by: str | None = None) -> str:
    """The document signed with the key of ``by`` (by default its own ``source``), as JSON."""
    return json.dumps(keys_of(by or document["source"]).sign(document))


def wire(envelope: Envelope, *, destination: str | None = None) -> str:
    """The envelope as its sender puts it on a queue (this service's, unless it names one)."""
    document = envelope.to_json_dict()
    document["destination"] = destination or envelope.destination or settings.SERVICE_NAME
    return signed(document)


def forged_signed(
    document: dict[str, Any], *, kid: str | None = None, by: str | None = None
) -> str:
    """The document signed as its ``source`` by someone without that service's key: with a key
    of their own (``by=None``) or with the key of service ``by``, under ``kid`` (by default
    the kid the real sender's newest key has)."""
    source = document["source"]
    real = keys_of(source).signer
    lent = keys_of(by).signer if by else None
    assert real is not None
    private = lent.private if lent else Ed25519PrivateKey.generate()
    impostor = KeyRing(signer=SigningKey(source, kid or real.kid, private), public={})
    return json.dumps(impostor.sign(document))


def push(client: redis.Redis, queue: str, *raw_envelopes: str) -> None:
    """Put envelopes on a queue as one task message each, as anyone who can reach Redis can."""
    from celery import current_app

    from common.messaging.transport import Outgoing, Publisher

    publisher = Publisher(current_app)
    for raw in raw_envelopes:
        message_id = str(json.loads(raw).get("id", uuid.uuid4()))
        client.lpush(queue, publisher.encode([Outgoing(queue, message_id, "?", raw)]))


def put(*envelopes: Envelope) -> None:
    """Write envelopes to this service's outbox as their senders would have signed them."""
    with transaction.atomic():
        for envelope in envelopes:
            outbox_put(envelope, keys=keys_of(envelope.source))


def consumed(*args: Any) -> str:
    """What ``inbox.consume`` made of one task message's envelopes, run in this process: their
    fates, comma-separated. A message with a parked envelope ends rejected (``tasks.Parked``),
    which is where its fates are then."""
    from common.inbox.tasks import Parked, consume

    result = consume.apply(args=args)
    if result.state == states.REJECTED:
        assert isinstance(result.result, Parked), result.result
        return result.result.fates
    return str(result.get())
