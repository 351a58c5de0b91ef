"""Forged messages on the account queue, as an attacker who can reach Redis would push them,
consumed by a real account worker: each is a dead letter ``forged``, acknowledged, with no
effect on any balance; the worker goes on consuming."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis

from account.accounts.models import Account, LedgerEntry, OrderPayment
from account.accounts.services import account_debit
from common.inbox.models import DeadLetter, InboxMessage
from common.messaging.contract import AccountMovement, OrderRef
from common.messaging.envelope import Correlation, new_command
from common.tests.integration.conftest import Processes
from common.tests.support import (
    forged_signed,
    funded_account,
    held,
    push,
    registered_event,
    signed,
    wait_until,
    wire,
)

pytestmark = pytest.mark.django_db(transaction=True)


def refund(customer_id: uuid.UUID, order_id: uuid.UUID, amount: int = 300) -> dict[str, Any]:
    """An account.refund as the orchestrator would address it."""
    return new_command(
        "account.refund",
        AccountMovement(customer_id=customer_id, order_id=order_id, amount=amount),
        source="orchestrator",
        correlation=Correlation(saga_id=uuid.uuid4(), step="refund", attempt=1),
    ).to_json_dict()


def debit(customer_id: uuid.UUID, amount: int) -> dict[str, Any]:
    return new_command(
        "account.debit",
        AccountMovement(customer_id=customer_id, order_id=uuid.uuid4(), amount=amount),
        source="orchestrator",
        correlation=Correlation(saga_id=uuid.uuid4(), step="debit", attempt=1),
    ).to_json_dict()


def test_forged_messages_are_dead_lettered_and_move_no_money(
    processes: Processes, queue: redis.Redis
) -> None:
    # Given a victim whose order was charged 300, and an attacker's account
    victim, attacker = funded_account(1000), funded_account(1)
    order_id = uuid.uuid4()
    account_debit(customer_id=victim, order_id=order_id, amount=300)
    to_attacker = refund(attacker, order_id)
    genuine_small_debit = json.loads(signed(debit(attacker, 1)))
    # (each forgery, and what its dead letter says)
    forgeries = [
        # a refund of the victim's order to the attacker's account: unsigned, badly signed,
        # signed with another service's key
        (json.dumps(to_attacker), "no signature"),
        (forged_signed(to_attacker), "does not verify"),
        (forged_signed(to_attacker, by="customer"), "does not verify"),
        # a command from a participant (genuinely signed by the customer service)
        (
            signed({**to_attacker, "source": "customer", "reply_to": "customer"}),
            "may be sent by orchestrator, not 'customer'",
        ),
        # a reply_to the contract does not name (it would become a Redis key)
        (
            signed({**debit(attacker, 1), "reply_to": "unacked"}),
            "asks for replies at 'unacked'",
        ),
        # a genuine debit of 1 yen, its amount raised under its old signature
        (
            json.dumps(
                {
                    **genuine_small_debit,
                    "payload": {**genuine_small_debit["payload"], "amount": 999},
                }
            ),
            "does not verify",
        ),
        # a genuine command for the order service, pushed onto the account queue
        (
            wire(
                new_command(
                    "order.approve",
                    OrderRef(order_id=order_id),
                    source="orchestrator",
                    correlation=Correlation(saga_id=uuid.uuid4()),
                )
            ),
            "addressed to 'order', received by 'account'",
        ),
        # an event from another service than its emitter
        (
            signed(
                {
                    **registered_event(attacker).to_json_dict(),
                    "source": "order",
                    "destination": "account",
                }
            ),
            "may be sent by customer, not 'order'",
        ),
    ]
    newcomer = uuid.uuid4()
    push(queue, "account", *(raw for raw, _ in forgeries), wire(registered_event(newcomer)))

    # When the account worker consumes them all (the last, genuine event opens an account)
    worker = processes.worker()
    wait_until(lambda: Account.objects.filter(pk=newcomer).exists(), timeout_s=30)

    # Then each forgery is a dead letter "forged", and nothing moved
    letters = list(DeadLetter.objects.order_by("id"))
    assert [letter.reason for letter in letters] == ["forged"] * len(forgeries)
    assert [letter.raw_body for letter in letters] == [raw for raw, _ in forgeries]
    for letter, (_, why) in zip(letters, forgeries, strict=True):
        assert why in letter.error
    assert Account.objects.get(pk=victim).balance == 700
    assert Account.objects.get(pk=attacker).balance == 1
    assert OrderPayment.objects.get(pk=order_id).state == "charged"
    assert not LedgerEntry.objects.filter(kind="refund").exists()
    assert LedgerEntry.objects.filter(kind="charge").count() == 1
    assert InboxMessage.objects.filter(type__startswith="account.").count() == 0
    assert worker.poll() is None
    assert queue.llen("account") == 0 and held(queue, "account") == 0  # all acknowledged


def test_a_genuine_refund_naming_another_customer_is_refused_with_a_reply(
    processes: Processes, queue: redis.Redis
) -> None:
    # Given a victim charged 300, and a refund the orchestrator itself signed naming someone else
    victim, attacker = funded_account(1000), funded_account(1)
    order_id = uuid.uuid4()
    account_debit(customer_id=victim, order_id=order_id, amount=300)
    command = refund(attacker, order_id)
    push(queue, "account", signed(command))

    # When the account worker handles it
    processes.worker()
    wait_until(lambda: InboxMessage.objects.filter(pk=command["id"]).exists(), timeout_s=30)

    # Then it is answered "customer_mismatch" (it is authentic; its claim is not) and moves nothing
    reply = InboxMessage.objects.get(pk=command["id"]).reply
    assert reply is not None
    assert (reply["payload"]["ok"], reply["payload"]["reason"]) == (False, "customer_mismatch")
    assert Account.objects.get(pk=victim).balance == 700
    assert Account.objects.get(pk=attacker).balance == 1
    assert OrderPayment.objects.get(pk=order_id).state == "charged"
