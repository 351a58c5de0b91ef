"""Who may do what on the broker: one Redis ACL user per service, and a read-mostly one for Flower.

The single source of the rules: ``make up``'s private Redis, docker compose and Kubernetes all
write their ``aclfile`` from here (``python -m common.messaging.redis_acl > users.acl``).

Each service's processes (web, worker, relay; the orchestrator's beat too) log in as that
service and may touch only the keys they use:

- its own queue (``<service>``): read and write; the queues its messages go to (the contract's
  routes, plus every queue for the orchestrator's beat, which schedules each service's
  housekeeping): ``LPUSH`` only, in a selector of its own (Redis 7), so that ``LPOP``,
  ``LRANGE``, ``BLMOVE``, ``LREM``, ``DEL`` and even ``LLEN`` there are refused;
- its kombu bookkeeping, all under ``_kombu.<service>.``: the unacknowledged messages
  (``unacked``, ``unacked_index``, ``unacked_mutex``), the consumers' processing lists, their
  registry and leases (see :func:`broker_keys`, given to kombu as transport options), and its
  queue's binding tables ``_kombu.binding.<service>``, ``_kombu.binding_permanent.<service>``;
- the relay's epoch marker ``outbox:epoch:<service>`` (common.outbox.replay);
- the customer service's Django cache (login throttling), under its ``KEY_PREFIX``;
- the Celery event channel (publish only), which Flower subscribes to.

Commands are listed one by one (``-@all`` first): no ``FLUSHALL``, ``FLUSHDB``, ``KEYS``,
``SCAN``, ``CONFIG``, ``DEBUG``, ``SCRIPT``, ``MODULE``, ``ACL``, ``SHUTDOWN``, ``MONITOR``,
``CLIENT`` or ``SUBSCRIBE`` for any service. Scripts (``EVAL``, used by the consumer's give-back)
run with the caller's permissions: a key a script touches must be allowed too.

Selectors and key permissions ``%R~``/``%W~`` need Redis 7.0 or later.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from common.messaging.contract import COMMANDER, MESSAGES, route_of
from common.messaging.routing import SERVICES

FLOWER: Final = "flower"
USERS: Final[tuple[str, ...]] = (*SERVICES, FLOWER)

#: The Celery exchange every process sends its task and worker events to, for Flower.
EVENT_EXCHANGE: Final = "celeryev"
#: The only service whose Django cache is used (django-ratelimit's login throttling).
CACHE_USERS: Final = ("customer",)

# Commands every service's processes use: connection upkeep and readiness, transactions and
# pipelines (kombu's MULTI/EXEC and WATCH), its queue and processing lists, the unacked hash
# and index, leases and the restore mutex, binding tables, the consumer's give-back script,
# events, and the relay's epoch check (INFO ``run_id`` and the marker).
SERVICE_COMMANDS: Final = (
    "ping",
    "select",
    "info",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "lpush",
    "rpush",
    "llen",
    "lrem",
    "lmove",
    "blmove",
    "get",
    "set",
    "del",
    "exists",
    "hset",
    "hget",
    "hdel",
    "hgetall",
    "zadd",
    "zrem",
    "zrange",
    "sadd",
    "smembers",
    "eval",
    "publish",
)
# The orchestrator's admission control reads the head of its queue (LINDEX), to see how long
# the next reply has waited.
ADMISSION_COMMANDS: Final = ("lindex",)
# Django's RedisCache as django-ratelimit drives it: add (SET NX EX), get, incr (EXISTS, INCRBY),
# delete, touch (EXPIRE).
CACHE_COMMANDS: Final = ("incrby", "expire")
# Flower (with its own app, common.messaging.flower): queue lengths on its Broker page (one
# pipeline of LLENs, in MULTI/EXEC), and the event stream.
FLOWER_COMMANDS: Final = ("ping", "select", "multi", "exec", "llen", "psubscribe", "punsubscribe")


def broker_keys(service: str) -> dict[str, str]:
    """kombu's bookkeeping keys of one service (transport options), each under its own prefix
    so that the ACL can keep one service's consumers off another's in-flight messages."""
    prefix = kombu_prefix(service)
    return {
        "unacked_key": f"{prefix}unacked",
        "unacked_index_key": f"{prefix}unacked_index",
        "unacked_mutex_key": f"{prefix}unacked_mutex",
        "processing_prefix": prefix,
    }


def kombu_prefix(service: str) -> str:
    return f"_kombu.{service}."


def event_channel(db: int) -> str:
    """The channel pattern of Celery's events: kombu prefixes fanout channels with the database
    number, and Flower subscribes to the pattern itself (PSUBSCRIBE is allowed only on a
    pattern the ACL names literally)."""
    return f"/{db}.{EVENT_EXCHANGE}/*"


def destinations(service: str) -> tuple[str, ...]:
    """The other queues a service pushes to: where its commands, replies and events go (the
    contract's routes), and for the orchestrator also every queue its beat schedules
    housekeeping on."""
    queues = {
        recipient
        for spec in MESSAGES.values()
        if service in (route := route_of(spec)).senders
        for recipient in route.recipients
    }
    if service == "orchestrator":
        queues.update(SERVICES)
    queues.discard(service)
    return tuple(sorted(queues))


def rules(user: str, *, db: int = 0) -> list[str]:
    """The ACL rule tokens of one user, without its password. ``db`` is the Redis database the
    stack uses: Celery's event channel is named after it."""
    if user == FLOWER:
        return [
            "resetkeys",
            "resetchannels",
            "-@all",
            *(f"+{command}" for command in FLOWER_COMMANDS),
            *(f"%R~{queue}" for queue in SERVICES),
            f"&{event_channel(db)}",
        ]
    if user not in SERVICES:
        raise ValueError(f"unknown Redis user {user!r}")
    commands = (
        SERVICE_COMMANDS
        + (ADMISSION_COMMANDS if user == COMMANDER else ())
        + (CACHE_COMMANDS if user in CACHE_USERS else ())
    )
    return [
        "resetkeys",
        "resetchannels",
        "-@all",
        *(f"+{command}" for command in commands),
        f"~{user}",
        f"~{kombu_prefix(user)}*",
        f"~_kombu.binding.{user}",
        f"~_kombu.binding_permanent.{user}",
        f"~outbox:epoch:{user}",
        *([f"~{user}:*"] if user in CACHE_USERS else []),
        f"&{event_channel(db)}",
        # A selector of its own: on the queues its messages go to, LPUSH and nothing else (with
        # the commands above, a write permission there would also allow DEL and LREM).
        f"({' '.join(['+lpush', *(f'%W~{queue}' for queue in destinations(user))])})",
    ]


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


#: The default user: off and without a password, so no one can log in as it, but with every
#: right. Redis replays its append-only file as that user and (before redis/redis#14545)
#: re-checks each MULTI/EXEC against its rules: with ``-@all`` every transaction in the file,
#: kombu's publishes among them, was dropped at a restart ("NOPERM … AOF-loading-client", seen
#: with Redis 7.0.15 in the compose run).
DEFAULT_USER_LINE: Final = "user default off resetpass ~* &* +@all"


def acl_lines(passwords: Mapping[str, str | Sequence[str]], *, db: int = 0) -> list[str]:
    """An ``aclfile``: every user on, with the SHA-256 of its password (or of each, while a
    password is being rotated), and the default user off (``DEFAULT_USER_LINE``)."""
    lines = []
    for user in USERS:
        given = passwords.get(user)
        accepted = [given] if isinstance(given, str) else list(given or ())
        if not accepted or not all(accepted):
            raise ValueError(f"no Redis password for {user!r}")
        if any(any(c.isspace() for c in p) for p in accepted):
            raise ValueError(f"the Redis password of {user!r} contains whitespace")
        hashes = [f"#{password_hash(p)}" for p in accepted]
        lines.append(" ".join(["user", user, "on", "resetpass", *hashes, *rules(user, db=db)]))
    lines.append(DEFAULT_USER_LINE)
    return lines


def password_variable(user: str) -> str:
    return f"{user.upper()}_REDIS_PASSWORD"


def passwords_from(environ: Mapping[str, str]) -> dict[str, list[str]]:
    """``<USER>_REDIS_PASSWORD`` of each user, and ``<USER>_REDIS_PASSWORD_PREVIOUS`` while a
    rotation still accepts the old one."""
    found = {}
    for user in USERS:
        names = (password_variable(user), f"{password_variable(user)}_PREVIOUS")
        found[user] = [environ[name] for name in names if environ.get(name)]
    return found


def user_url(url: str, user: str, password: str) -> str:
    """``url`` (a ``redis://`` URL, its host, port and database) logged in as ``user``."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.messaging.redis_acl",
        description="Print a Redis aclfile: one user per service and Flower, passwords from "
        "<USER>_REDIS_PASSWORD (and <USER>_REDIS_PASSWORD_PREVIOUS while rotating).",
    )
    parser.add_argument(
        "--db", type=int, default=int(os.environ.get("REDIS_DB", "0")), help="Redis database"
    )
    args = parser.parse_args(argv)
    passwords = passwords_from(os.environ)
    missing = [password_variable(user) for user, given in passwords.items() if not given]
    if missing:
        sys.stderr.write(f"redis_acl: set {', '.join(missing)}\n")
        return 2
    sys.stdout.write("".join(f"{line}\n" for line in acl_lines(passwords, db=args.db)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
