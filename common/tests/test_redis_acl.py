"""The Redis users' rules, as text: what each may touch, and the aclfile they are written to.
(What Redis makes of them, with real processes: common/tests/integration/test_redis_acl.py.)"""

from __future__ import annotations

import hashlib
from fnmatch import fnmatchcase

import pytest

from common.messaging import redis_acl
from common.messaging.celery import transport_options
from common.messaging.redis_acl import (
    FLOWER,
    USERS,
    acl_lines,
    broker_keys,
    destinations,
    main,
    passwords_from,
    rules,
    user_url,
)
from common.messaging.routing import SERVICES

FORBIDDEN = (
    "flushall",
    "flushdb",
    "config",
    "debug",
    "keys",
    "scan",
    "script",
    "module",
    "acl",
    "shutdown",
    "monitor",
    "client",
    "migrate",
    "restore",
    "replicaof",
    "slaveof",
    "save",
    "bgsave",
    "bgrewriteaof",
    "subscribe",
    "swapdb",
    "move",
    "rename",
)
PASSWORDS = {user: f"secret-{user}" for user in USERS}


def commands(tokens: list[str]) -> set[str]:
    """Every command a user is granted, in the root rules or in a selector."""
    words = " ".join(tokens).replace("(", " ").replace(")", " ").split()
    return {word[1:] for word in words if word.startswith("+")}


def key_patterns(tokens: list[str], *, inside_selector: bool = False) -> list[str]:
    words = [t for t in tokens if t.startswith("(") == inside_selector]
    if inside_selector:
        words = " ".join(words).strip("()").split()
    return [w for w in words if w.startswith(("~", "%"))]


def reaches(pattern: str, key: str) -> bool:
    return fnmatchcase(key, pattern.split("~", 1)[1])


def test_every_service_and_flower_has_a_user() -> None:
    assert USERS == ("customer", "account", "order", "orchestrator", "flower")


@pytest.mark.parametrize("user", USERS)
def test_a_user_starts_from_nothing_and_gets_no_dangerous_command(user: str) -> None:
    tokens = rules(user)

    assert tokens[:3] == ["resetkeys", "resetchannels", "-@all"]
    assert not any(
        t.startswith(("+@", "allkeys", "allchannels", "allcommands", "~*")) for t in tokens
    )
    assert not commands(tokens) & set(FORBIDDEN)
    assert not any("|" in command for command in commands(tokens))  # no subcommand back door


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_reaches_its_own_keys_and_no_other_services(service: str) -> None:
    own = [
        service,
        *(key for k, key in broker_keys(service).items() if k != "processing_prefix"),
        f"{broker_keys(service)['processing_prefix']}processing.c0ffee.{service}",
        f"{broker_keys(service)['processing_prefix']}lease.c0ffee",
        f"_kombu.binding.{service}",
        f"outbox:epoch:{service}",
    ]
    root = key_patterns(rules(service))

    assert all(any(reaches(p, key) for p in root) for key in own), own
    for other in SERVICES:
        if other == service:
            continue
        theirs = [
            other,
            broker_keys(other)["unacked_key"],
            f"{broker_keys(other)['processing_prefix']}processing.c0ffee.{other}",
            f"_kombu.binding.{other}",
            f"outbox:epoch:{other}",
            f"{other}:1:rl:login",
        ]
        assert not any(reaches(p, key) for p in root for key in theirs), (service, other)


def test_only_lpush_reaches_the_queues_a_service_sends_to() -> None:
    for service in SERVICES:
        selector = [t for t in rules(service) if t.startswith("(")]
        assert len(selector) == 1
        words = selector[0].strip("()").split()
        assert [w for w in words if w.startswith("+")] == ["+lpush"]
        assert {w.removeprefix("%W~") for w in words if w.startswith("%")} == set(
            destinations(service)
        )
        assert all(w.startswith(("+", "%W~")) for w in words)  # no read there


def test_destinations_are_the_contracts_routes_and_the_beats_queues() -> None:
    assert destinations("customer") == ("account", "orchestrator")  # replies, customer.registered
    assert destinations("account") == ("orchestrator",)
    assert destinations("order") == ("orchestrator",)
    assert destinations("orchestrator") == ("account", "customer", "order")


def test_only_the_customer_service_has_a_cache() -> None:
    assert "~customer:*" in rules("customer")
    assert {"incrby", "expire"} <= commands(rules("customer"))
    assert not {"incrby", "expire"} & commands(rules("account"))
    assert not any(p.endswith(":*") for s in SERVICES[1:] for p in key_patterns(rules(s)))


def test_only_the_orchestrator_reads_its_queue_head_for_admission_control() -> None:
    assert [s for s in SERVICES if "lindex" in commands(rules(s))] == ["orchestrator"]


def test_flower_may_read_queue_lengths_and_events_and_write_nothing() -> None:
    tokens = rules(FLOWER, db=3)

    assert commands(tokens) == {
        "ping",
        "select",
        "multi",
        "exec",
        "llen",
        "psubscribe",
        "punsubscribe",
    }
    assert key_patterns(tokens) == [f"%R~{service}" for service in SERVICES]
    assert "&/3.celeryev/*" in tokens


def test_the_event_channel_is_named_after_the_database() -> None:
    assert "&/5.celeryev/*" in rules("order", db=5)
    assert "&/0.celeryev/*" in rules("order")


def test_an_unknown_user_has_no_rules() -> None:
    with pytest.raises(ValueError, match="unknown Redis user"):
        rules("default")


def test_the_aclfile_has_every_user_with_its_password_hashed_and_the_default_user_off() -> None:
    lines = acl_lines(PASSWORDS)

    assert [line.split()[1] for line in lines] == [*USERS, "default"]
    # Off and without a password (no one logs in as it), but with every right: Redis replays
    # its append-only file as the default user, and with -@all dropped every MULTI/EXEC in it.
    assert lines[-1] == "user default off resetpass ~* &* +@all"
    for user, line in zip(USERS, lines, strict=False):
        digest = hashlib.sha256(PASSWORDS[user].encode()).hexdigest()
        assert line.startswith(f"user {user} on resetpass #{digest} ")
        assert PASSWORDS[user] not in line
        assert line.endswith(" ".join(rules(user)))


def test_a_rotation_accepts_both_passwords() -> None:
    line = acl_lines({**PASSWORDS, "account": ["new-one", "old-one"]})[1]

    for password in ("new-one", "old-one"):
        assert f"#{hashlib.sha256(password.encode()).hexdigest()}" in line.split()


@pytest.mark.parametrize("given", [None, "", [], ["ok", ""], "with space"])
def test_a_missing_empty_or_unwritable_password_is_refused(given: object) -> None:
    passwords = {**PASSWORDS, "order": given}
    if given is None:
        del passwords["order"]

    with pytest.raises(ValueError, match="'order'"):
        acl_lines(passwords)  # type: ignore[arg-type]


def test_the_command_line_prints_the_aclfile_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for user, password in PASSWORDS.items():
        monkeypatch.setenv(f"{user.upper()}_REDIS_PASSWORD", password)
    monkeypatch.setenv("ACCOUNT_REDIS_PASSWORD_PREVIOUS", "the-old-one")

    assert main(["--db", "2"]) == 0

    expected = acl_lines({**PASSWORDS, "account": [PASSWORDS["account"], "the-old-one"]}, db=2)
    assert capsys.readouterr().out.splitlines() == expected


def test_the_command_line_names_every_missing_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for user in USERS:
        monkeypatch.delenv(f"{user.upper()}_REDIS_PASSWORD", raising=False)
    monkeypatch.setenv("ORDER_REDIS_PASSWORD", "x")

    assert main([]) == 2

    err = capsys.readouterr().err
    assert "CUSTOMER_REDIS_PASSWORD" in err and "FLOWER_REDIS_PASSWORD" in err
    assert "ORDER_REDIS_PASSWORD," not in err


def test_passwords_from_skips_empty_values() -> None:
    found = passwords_from({"ACCOUNT_REDIS_PASSWORD": "a", "ACCOUNT_REDIS_PASSWORD_PREVIOUS": ""})

    assert found["account"] == ["a"] and found["order"] == []


def test_a_user_url_keeps_host_port_and_database_and_quotes_the_password() -> None:
    url = user_url("redis://redis.internal:6380/4", "account", "p@ss/word")

    assert url == "redis://account:p%40ss%2Fword@redis.internal:6380/4"


def test_the_celery_transport_options_name_the_services_own_keys() -> None:
    options = transport_options("order", 300)

    assert options["unacked_key"] == "_kombu.order.unacked"
    assert options["unacked_index_key"] == "_kombu.order.unacked_index"
    assert options["unacked_mutex_key"] == "_kombu.order.unacked_mutex"
    assert options["processing_prefix"] == redis_acl.kombu_prefix("order") == "_kombu.order."
