"""Faults while sagas run: processes killed with SIGKILL, a reply lost, a reply delivered twice.
Every saga still ends completed or rejected, and the Outcomes of DESIGN.md §7 hold."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis

from tests.e2e.cafe import Cafe
from tests.e2e.conftest import REDIS_URL, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def pid_of(stack: Stack, program: str) -> int:
    match = re.search(rf"^{program}\s+RUNNING\s+pid (\d+)", stack.supervisorctl("status"), re.M)
    assert match is not None, stack.supervisorctl("status")
    return int(match.group(1))


def kill9(stack: Stack, program: str) -> None:
    """SIGKILL the program's whole process group (with any children it has)."""
    os.killpg(os.getpgid(pid_of(stack, program)), signal.SIGKILL)


def wait_running(stack: Stack, program: str, old_pid: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(rf"^{program}\s+RUNNING\s+pid (\d+)", stack.supervisorctl("status"), re.M)
        if match and int(match.group(1)) != old_pid:
            return
        time.sleep(0.2)
    raise AssertionError(f"{program} was not restarted")


@pytest.mark.parametrize("program", ["account-worker", "orchestrator-worker", "order-relay"])
def test_sagas_end_and_outcomes_hold_when_a_process_is_killed_mid_run(
    stack: Stack, program: str
) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        cafe = Cafe(http)
        customers = [cafe.customer(deposit=3000) for _ in range(3)]
        stop = threading.Event()

        def shop() -> None:
            n = 0
            while not stop.is_set() and n < 60:
                # While the orchestrator is behind (its worker is dead), admission control may
                # refuse a checkout: that one started nothing and is not waited for.
                cafe.checkout_unless_shed(
                    customers[n % 3], [{"menu_item_id": 1 + n % 6, "quantity": 1 + n % 2}]
                )
                n += 1
                time.sleep(0.03)

        shopper = threading.Thread(target=shop)
        shopper.start()
        time.sleep(1.0)
        before = pid_of(stack, program)
        kill9(stack, program)
        time.sleep(1.0)
        stop.set()
        shopper.join()
        wait_running(stack, program, before)
        # a cancellation of something approved, while recovering
        finals = cafe.wait_all(timeout_s=180)
        approved = [f for f in finals if f["state"] == "completed"]
        assert approved, "nothing was approved"
        cafe.wait(cafe.cancel(approved[0]["order_id"]), timeout_s=120)

        finals = cafe.wait_all(timeout_s=180)
        assert {f["state"] for f in finals} <= {"completed", "rejected"}
        cafe.assert_outcomes()


def _reply_in_queue(broker: redis.Redis, reply_type: str, timeout_s: float = 20) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for item in broker.lrange("orchestrator", 0, -1):
            message = json.loads(item)
            if message["headers"].get("task") != "inbox.consume":
                continue
            args, _, _ = json.loads(base64.b64decode(message["body"]))
            if json.loads(args[0])["type"] == reply_type:
                return bytes(item)
        time.sleep(0.05)
    raise AssertionError(f"no {reply_type} in the orchestrator queue")


@contextmanager
def first_reply_held(
    stack: Stack, broker: redis.Redis, cafe: Cafe
) -> Iterator[tuple[dict[str, Any], bytes]]:
    """With the orchestrator's worker stopped, start a checkout and hand over its first reply
    as it sits in the orchestrator's queue; the worker starts again afterwards."""
    customer = cafe.customer(deposit=3000)
    stack.supervisorctl("stop", "orchestrator-worker")
    try:
        checkout = cafe.checkout(customer, [{"menu_item_id": 2, "quantity": 1}])
        yield checkout, _reply_in_queue(broker, "order.create_pending.reply")
    finally:
        stack.supervisorctl("start", "orchestrator-worker")


def test_a_lost_reply_is_recovered_by_the_deadline_sweep(
    stack: Stack, gateway: httpx.Client, broker: redis.Redis
) -> None:
    cafe = Cafe(gateway)
    with first_reply_held(stack, broker, cafe) as (checkout, reply):
        assert broker.lrem("orchestrator", 0, reply) == 1  # the reply is lost

    done = cafe.wait(checkout, timeout_s=60)

    assert done["state"] == "completed"
    assert done["steps"][0]["attempts"] >= 2  # the sweep sent create_pending again
    cafe.assert_outcomes()


def test_a_reply_delivered_twice_is_applied_once(
    stack: Stack, gateway: httpx.Client, broker: redis.Redis
) -> None:
    cafe = Cafe(gateway)
    with first_reply_held(stack, broker, cafe) as (checkout, reply):
        broker.lpush("orchestrator", reply)  # the same message again

    done = cafe.wait(checkout, timeout_s=60)

    assert done["state"] == "completed"
    assert [s["state"] for s in done["steps"]] == ["succeeded"] * 4
    with stack.operator_client() as operator:
        metrics = operator.get("/orchestrator/metrics").text
    assert re.search(r'inbox_duplicates_total\{type="order.create_pending.reply"\} [1-9]', metrics)
    cafe.assert_outcomes()


def _envelopes(broker: redis.Redis, queue: str) -> int:
    """Envelopes waiting on a queue (a task message may carry several)."""
    count = 0
    for item in broker.lrange(queue, 0, -1):
        args, _, _ = json.loads(base64.b64decode(json.loads(item)["body"]))
        count += len(args)
    return count


def test_a_flushed_broker_loses_no_event_and_no_saga(
    stack: Stack, gateway: httpx.Client, broker: redis.Redis
) -> None:
    cafe = Cafe(gateway)
    shoppers = [cafe.customer(deposit=3000) for _ in range(3)]
    stack.supervisorctl("stop", "account-worker")
    try:
        newcomers = [cafe.sign_up()[0] for _ in range(5)]  # customer.registered waits
        for n, customer in enumerate(shoppers):  # their debits wait too
            cafe.checkout(customer, [{"menu_item_id": 1 + n, "quantity": 1}])
        deadline = time.monotonic() + 30
        while _envelopes(broker, "account") < len(newcomers) + len(shoppers):
            assert time.monotonic() < deadline, "the messages never reached the account queue"
            time.sleep(0.05)

        broker.flushdb()  # Redis loses everything it held (a restart without persistence)
    finally:
        stack.supervisorctl("start", "account-worker")

    deadline = time.monotonic() + 60
    for customer in newcomers:  # events have no deadline sweep: only a replay opens these
        while gateway.get(f"/api/v1/accounts/{customer}").status_code != 200:
            assert time.monotonic() < deadline, f"the account of {customer} never opened"
            time.sleep(0.1)
    finals = cafe.wait_all(timeout_s=120)
    assert {f["state"] for f in finals} <= {"completed", "rejected"}
    cafe.customers.update(newcomers)
    cafe.assert_outcomes()
