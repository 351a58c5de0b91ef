"""Messages a worker can never handle are dead-lettered and acknowledged; the worker goes on."""

from __future__ import annotations

import base64
import json
import pickle
import uuid

import pytest
import redis
from celery import current_app

from account.accounts.models import Account
from common.inbox.models import DeadLetter
from common.messaging.transport import Outgoing, Publisher, kombu_redis_payload
from common.tests.integration.conftest import Processes
from common.tests.support import debit_command, held, registered_event, signed, wait_until, wire

pytestmark = pytest.mark.django_db(transaction=True)


def raw_message(*, body: bytes, content_type: str, task: str = "inbox.consume") -> str:
    message = json.loads(
        kombu_redis_payload(
            body="",
            headers={"task": task, "id": str(uuid.uuid4()), "lang": "py"},
            properties={"correlation_id": str(uuid.uuid4())},
            queue="account",
        )
    )
    message["body"] = base64.b64encode(body).decode()
    message["content-type"] = content_type
    return json.dumps(message)


def celery_message(envelope_json: str) -> str:
    return Publisher(current_app).encode(
        [
            Outgoing(
                queue="account",
                message_id=str(uuid.uuid4()),
                type="x",
                envelope_json=envelope_json,
            )
        ]
    )


def test_poison_messages_are_dead_lettered_and_the_worker_keeps_consuming(
    processes: Processes, queue: redis.Redis
) -> None:
    good = debit_command(uuid.uuid4(), 1).model_dump(mode="json")
    customer_id = uuid.uuid4()
    valid = registered_event(customer_id, name="After")
    poison = [
        raw_message(body=b"{this is not json", content_type="application/json"),
        raw_message(body=pickle.dumps(([], {}, {})), content_type="application/x-python-serialize"),
        raw_message(
            body=json.dumps([["{}"], {}, {}]).encode(),
            content_type="application/json",
            task="somebody.elses.task",
        ),
        celery_message("{not an envelope"),
        celery_message(signed({**good, "type": "account.teleport"})),
        celery_message(signed({**good, "payload": {"customer_id": "nope"}})),
    ]
    for item in [*poison, celery_message(wire(valid))]:
        queue.lpush("account", item)  # consumed in this order

    worker = processes.worker()

    wait_until(lambda: Account.objects.filter(pk=customer_id).exists(), timeout_s=30)
    reasons = sorted(DeadLetter.objects.values_list("reason", flat=True))
    assert reasons == sorted(
        [
            "undecodable",
            "content_type",
            "unknown_task",
            "undecodable",
            "unknown_type",
            "invalid_payload",
        ]
    )
    assert all(letter.raw_body for letter in DeadLetter.objects.all())
    assert worker.poll() is None  # still running
    assert queue.llen("account") == 0
    wait_until(lambda: held(queue, "account") == 0)  # every poison message was acknowledged
