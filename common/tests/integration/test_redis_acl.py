"""The Redis ACL, on a real private redis-server started with the generated aclfile (as
``make up`` starts its own): each service's user can do what that service's relay, worker and
web process do, with the real processes, and cannot reach another service's queue or kombu
keys, nor run FLUSHALL and the like; Flower's user reads and never writes."""

from __future__ import annotations

import json
import os
import signal
import stat
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from celery import current_app
from django.core.cache.backends.redis import RedisCache
from django.db import transaction
from redis.backoff import NoBackoff
from redis.retry import Retry

from account.accounts.models import Account, LedgerEntry
from common.messaging.celery import housekeeping_schedule, make_celery_app
from common.messaging.envelope import Envelope
from common.messaging.redis_acl import USERS, broker_keys
from common.messaging.routing import SERVICES
from common.messaging.transport import Outgoing, Publisher
from common.tests.integration.conftest import BIN, Processes
from common.tests.integration.test_consumer_paths import _terminate_lock_waiters
from common.tests.integration.test_relay_faults import _waiting_on_lock
from common.tests.support import (
    debit_command,
    funded_account,
    held,
    queued,
    registered_event,
    wait_until,
    wire,
)
from deploy.local.backing import start_acl_redis, stop_private_redis
from tests.e2e.gateways import free_port

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN = "acl-test-admin"  # the test's own view of the broker, not one of the stack's users


@dataclass
class AclRedis:
    data: Path
    port: int
    urls: dict[str, str]

    def client(self, user: str) -> redis.Redis:
        return redis.Redis.from_url(self.urls[user], socket_timeout=5)

    @property
    def admin(self) -> redis.Redis:
        return self.client(ADMIN)

    def denials(self) -> list[str]:
        """What Redis refused since the last reset (``ACL LOG``): user, command or key."""
        entries: list[dict[str, Any]] = self.admin.acl_log()
        return [f"{e['username']}: {e['reason']} {e['object']} ({e['context']})" for e in entries]


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[AclRedis]:
    data, port = tmp_path / "redis", free_port()
    urls = start_acl_redis(data, port, admin=ADMIN)
    try:
        yield AclRedis(data, port, urls)
    finally:
        stop_private_redis(data, port)


def login(port: int, username: str | None = None, password: str | None = None) -> redis.Redis:
    """A client that gives up at once when its login is refused (redis-py retries by default)."""
    return redis.Redis(port=port, username=username, password=password, retry=Retry(NoBackoff(), 0))


def refused(call: Callable[..., object], *args: object) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        call(*args)


def test_the_passwords_and_the_aclfile_are_for_their_owner_only(acl_redis: AclRedis) -> None:
    for name in ("passwords.json", "users.acl"):
        assert stat.S_IMODE((acl_redis.data / name).stat().st_mode) == 0o600
    written = (acl_redis.data / "users.acl").read_text()
    stored = json.loads((acl_redis.data / "passwords.json").read_text())
    assert all(stored[user] not in written for user in USERS)  # hashed


def test_without_a_user_nothing_is_allowed(acl_redis: AclRedis) -> None:
    anonymous = login(acl_redis.port)

    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        login(acl_redis.port, "account", "guess").ping()


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_cannot_touch_another_services_queue_or_keys(
    acl_redis: AclRedis, service: str
) -> None:
    me = acl_redis.client(service)
    admin = acl_redis.admin
    for other in SERVICES:
        admin.lpush(other, "a message")
    for other in (s for s in SERVICES if s != service):
        theirs = broker_keys(other)
        refused(me.lpop, other)
        refused(me.rpop, other)
        refused(me.lrange, other, 0, -1)
        refused(me.lindex, other, -1)
        refused(me.llen, other)
        refused(me.blmove, other, f"{theirs['processing_prefix']}x", 0.1)
        refused(me.lmove, other, service)
        refused(me.lrem, other, 1, "a message")
        refused(me.delete, other)
        refused(me.hset, theirs["unacked_key"], "tag", "x")
        refused(me.hgetall, theirs["unacked_key"])
        refused(me.zadd, theirs["unacked_index_key"], {"tag": 1})
        refused(me.set, theirs["unacked_mutex_key"], "x")
        refused(me.set, f"{theirs['processing_prefix']}lease.x", 1)
        refused(me.hset, f"{theirs['processing_prefix']}processing", "l", "[]")
        refused(me.sadd, f"_kombu.binding.{other}", "x")
        refused(me.set, f"outbox:epoch:{other}", "x")
        refused(me.get, f"{other}:1:some-cache-key")
    for command in (
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "*"),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("SCRIPT", "FLUSH"),
        ("ACL", "LIST"),
        ("CLIENT", "LIST"),
        ("MODULE", "LIST"),
        ("SUBSCRIBE", "anything"),
    ):
        refused(me.execute_command, *command)
    # Refused before the ACL is asked (DEBUG is off by configuration) or not to be tried for real.
    for command in (("DEBUG", "SLEEP", "0"), ("SHUTDOWN", "NOSAVE"), ("REPLICAOF", "a", "1")):
        verdict = admin.execute_command("ACL", "DRYRUN", service, *command)
        assert b"no permissions" in verdict, (command, verdict)
    # What is left of the others' queues: every message, untouched; and Redis logged each.
    assert all(admin.lrange(other, 0, -1) == [b"a message"] for other in SERVICES)
    assert acl_redis.denials() and all(d.startswith(f"{service}: ") for d in acl_redis.denials())


def test_a_script_runs_with_its_callers_rights(acl_redis: AclRedis) -> None:
    acl_redis.admin.lpush("orchestrator", "a reply")

    with pytest.raises(redis.ResponseError, match="can't run this command"):
        acl_redis.client("account").eval("return redis.call('LPOP', 'orchestrator')", 0)
    assert acl_redis.admin.llen("orchestrator") == 1


def test_flower_reads_queue_lengths_and_writes_nothing(acl_redis: AclRedis) -> None:
    flower = acl_redis.client("flower")
    acl_redis.admin.lpush("account", "a message")

    assert [flower.llen(queue) for queue in SERVICES] == [0, 1, 0, 0]
    refused(flower.lpush, "account", "a forged message")
    refused(flower.delete, "account")
    refused(flower.lpop, "account")
    refused(flower.lrange, "account", 0, -1)
    refused(flower.set, "anything", 1)
    refused(flower.publish, "/0.celeryev/task.received", "{}")
    refused(flower.execute_command, "FLUSHDB")
    assert acl_redis.admin.lrange("account", 0, -1) == [b"a message"]


def test_the_customer_services_cache_is_its_own(acl_redis: AclRedis) -> None:
    """django-ratelimit's login throttling: add, incr and get in the customer's cache."""

    def cache(user: str) -> RedisCache:
        return RedisCache(acl_redis.urls[user], {"KEY_PREFIX": "customer"})

    customer = cache("customer")
    assert customer.add("rl:login-user:ann", 0, 300)
    assert customer.incr("rl:login-user:ann") == 1
    assert customer.get("rl:login-user:ann") == 1
    assert customer.touch("rl:login-user:ann", 60)
    customer.delete("rl:login-user:ann")

    with pytest.raises(redis.exceptions.NoPermissionError):
        cache("account").add("rl:login-user:ann", 0, 300)


def test_a_password_is_rotated_with_two_accepted_for_a_while(acl_redis: AclRedis) -> None:
    old = acl_redis.client("account")
    new = login(acl_redis.port, "account", "the-new-password")

    acl_redis.admin.execute_command("ACL", "SETUSER", "account", ">the-new-password")  # both
    assert old.ping() and new.ping()
    old_password = str(old.connection_pool.connection_kwargs["password"])
    acl_redis.admin.execute_command("ACL", "SETUSER", "account", f"<{old_password}")  # new only

    assert new.ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        login(acl_redis.port, "account", old_password).ping()
    refused(new.lpop, "orchestrator")  # its rules are unchanged


def test_the_orchestrators_beat_pushes_housekeeping_to_every_queue(acl_redis: AclRedis) -> None:
    """As beat sends its entries (``send_task`` with each entry's options), and as admission
    control then reads the orchestrator's queue head: LLEN and LINDEX."""
    previous = cast(Any, current_app)._get_current_object()  # make_celery_app replaces it
    beat = make_celery_app("orchestrator")
    beat.conf.update(broker_url=acl_redis.urls["orchestrator"])
    try:
        for entry in housekeeping_schedule().values():
            beat.send_task(entry["task"], **entry["options"])
    finally:
        beat.close()
        previous.set_current()

    assert [acl_redis.admin.llen(queue) for queue in SERVICES] == [1, 1, 1, 1]
    orchestrator = acl_redis.client("orchestrator")
    assert orchestrator.llen("orchestrator") == 1
    assert orchestrator.lindex("orchestrator", -1) is not None
    # Beat declared no other service's queue (that would write to its binding tables).
    assert set(acl_redis.admin.keys("_kombu.binding*")) <= {
        b"_kombu.binding.orchestrator",
        b"_kombu.binding_permanent.orchestrator",
    }
    assert acl_redis.denials() == []


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 — our own loopback URL
        return int(reply.status), reply.read()


def _answers(url: str) -> bool:
    try:
        return _get(url)[0] == 200
    except OSError:
        return False


def test_real_processes_each_logged_in_as_their_own_service_carry_a_message_across(
    acl_redis: AclRedis, processes: Processes, tmp_path: Path
) -> None:
    """The orchestrator's publish and the customer's event reach the account worker; the
    account relay publishes the reply to the orchestrator's queue; the account web process
    answers readiness and metrics; Flower sees the tasks: and Redis refused none of them."""
    account_env = {"REDIS_URL": acl_redis.urls["account"], "CELERY_VISIBILITY_TIMEOUT": "3"}
    web_port, flower_port = free_port(), free_port()
    processes.web(web_port, extra_env=account_env)
    processes._start(
        "flower",
        [
            str(BIN / "celery"),
            *("-A", "common.messaging.flower", "flower", "--address=127.0.0.1"),
            *(f"--port={flower_port}", "--url_prefix=flower"),
        ],
        {"REDIS_URL": acl_redis.urls["flower"], "FLOWER_UNAUTHENTICATED_API": "true"},
    )
    processes.relay(extra_env=account_env)
    processes.worker(extra_env=account_env)
    flower = f"http://127.0.0.1:{flower_port}/flower"
    wait_until(lambda: _answers(f"{flower}/healthcheck"), timeout_s=30)
    customer_id = funded_account(1000)
    command = debit_command(customer_id, 300)
    newcomer = registered_event()

    _publish(acl_redis, "orchestrator", command)
    _publish(acl_redis, "customer", newcomer)

    wait_until(lambda: LedgerEntry.objects.filter(kind="charge").exists(), timeout_s=30)
    wait_until(lambda: Account.objects.filter(customer_id=newcomer.payload["customer_id"]).exists())
    assert Account.objects.get(pk=customer_id).balance == 700
    wait_until(lambda: acl_redis.admin.llen("orchestrator") == 1, timeout_s=30)
    (reply,) = queued(acl_redis.admin, "orchestrator")
    assert reply["type"] == "account.debit.reply" and reply["source"] == "account"
    wait_until(lambda: held(acl_redis.admin, "account") == 0)
    status, metrics = _get(f"http://127.0.0.1:{web_port}/account/metrics")
    assert status == 200 and b"inbox_queue_depth 0.0" in metrics
    wait_until(lambda: _answers(f"http://127.0.0.1:{web_port}/account/readyz"))
    tasks = wait_until(
        lambda: (found := json.loads(_get(f"{flower}/api/tasks")[1])) and found, timeout_s=20
    )
    assert {str(command.id), str(newcomer.id)} <= set(tasks)
    status, page = _get(f"{flower}/broker")
    assert status == 200 and b"orchestrator" in page
    assert acl_redis.denials() == []


def _publish(acl_redis: AclRedis, sender: str, envelope: Envelope) -> None:
    """As ``sender``'s relay publishes (its Publisher, its user)."""
    publisher = Publisher(current_app, broker_url=acl_redis.urls[sender])
    try:
        message = Outgoing("account", str(envelope.id), envelope.type, wire(envelope))
        assert publisher.publish([message]) == {}
    finally:
        publisher.close()


def test_what_dead_workers_held_comes_back_through_the_sweeps_of_the_next(
    acl_redis: AclRedis, processes: Processes
) -> None:
    """The sweep's own commands under the account user: the give-back script, for a message
    taken by a worker that was frozen and then died before it started on the message, and for
    one whose worker died while handling it."""
    env = {"REDIS_URL": acl_redis.urls["account"], "CELERY_VISIBILITY_TIMEOUT": "3"}
    admin = acl_redis.admin
    customer_id = funded_account(1000)
    newcomer = registered_event()
    frozen = processes.worker(extra_env=env)
    wait_until(lambda: any(c["cmd"] == "blmove" for c in admin.client_list()))
    os.kill(frozen.pid, signal.SIGSTOP)  # waits in Redis: takes the next message, records nothing
    _publish(acl_redis, "customer", newcomer)
    wait_until(lambda: admin.llen("account") == 0)
    processes.kill(frozen)

    with transaction.atomic():
        Account.objects.select_for_update().get(pk=customer_id)
        handling = processes.worker(extra_env=env)
        # The newcomer's event, given back once the dead worker's lease ran out, is handled.
        wait_until(lambda: Account.objects.filter(customer_id=newcomer.payload["customer_id"]))
        _publish(acl_redis, "orchestrator", debit_command(customer_id, 300))
        wait_until(lambda: admin.llen("account") == 0 and _waiting_on_lock())
        processes.kill(handling)  # dies holding the debit, in its processing list
        _terminate_lock_waiters()
    assert held(admin, "account") == 1

    processes.worker(extra_env=env)

    wait_until(lambda: LedgerEntry.objects.filter(kind="charge").exists(), timeout_s=30)
    assert Account.objects.get(pk=customer_id).balance == 700
    wait_until(lambda: held(admin, "account") == 0)
    assert acl_redis.denials() == []


def test_a_service_sends_only_where_the_contract_says(acl_redis: AclRedis) -> None:
    publisher = Publisher(current_app, broker_url=acl_redis.urls["account"])
    stray = Outgoing("customer", str(uuid.uuid4()), "account.debit.reply", "{}")

    refusals = publisher.publish([stray])

    assert set(refusals) == {"customer"}
    assert isinstance(refusals["customer"], redis.exceptions.NoPermissionError)
    assert acl_redis.admin.llen("customer") == 0
    publisher.close()
