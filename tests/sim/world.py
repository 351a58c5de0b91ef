"""The four services in one process: whose turn it is, their databases, and their relays.

Production runs each service as its own processes with its own settings. Here one process
holds a connection to each service's database; ``acting(service)`` makes that connection
Django's default one and sets ``SERVICE_NAME`` and the handler table, so the production code
that runs inside the block (use-cases, inbox, outbox, saga engine) is that service's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections

from common.messaging.keys import generate_key_pair
from common.messaging.transport import Outgoing, Publisher
from common.outbox.relay import Relay
from tests.sim.settings import HANDLER_TABLES, SERVICES, SIM_MESSAGE_KEYS_DIR

# Tables the migrations fill (the menu, Django's own) keep their rows between runs.
KEPT = {"django_migrations", "django_content_type", "auth_permission", "orders_menuitem"}


@contextmanager
def acting(service: str) -> Iterator[None]:
    """Run the block as ``service``: its database, its name, its handlers."""
    # (Django keeps each alias's connection in a thread-local; the default one is swapped.)
    local = connections._connections  # type: ignore[attr-defined]
    saved = getattr(local, "default", None)
    local.default = connections[service]
    settings.SERVICE_NAME = service
    settings.MESSAGE_HANDLERS = HANDLER_TABLES[service]
    settings.MESSAGE_SIGNING_KEYS_DIR = SIM_MESSAGE_KEYS_DIR / service
    try:
        yield
    finally:
        if saved is not None:
            local.default = saved


def ensure_message_keys() -> None:
    """A signing key pair per service, made once (the simulation's own, under var/)."""
    for service in SERVICES:
        signing = SIM_MESSAGE_KEYS_DIR / service
        if not any(signing.glob(f"{service}.*.key")):
            generate_key_pair(
                service, signing_dir=signing, verify_dir=settings.MESSAGE_VERIFY_KEYS_DIR
            )


def create_databases() -> None:
    """Create the simulation databases if needed and bring their schema up to date, and the
    services' message keys."""
    ensure_message_keys()
    for service in SERVICES:
        db = settings.DATABASES[service]
        with psycopg.connect(
            host=db["HOST"] or "127.0.0.1",
            port=int(db["PORT"] or 5432),
            user=db["USER"] or None,
            password=db.get("PASSWORD") or None,
            dbname="postgres",
            autocommit=True,
        ) as admin:
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
            if exists.fetchone() is None:
                admin.execute(f'CREATE DATABASE "{db["NAME"]}"')
        with acting(service):
            call_command("migrate", database=service, verbosity=0, interactive=False)


_tables: dict[str, list[str]] = {}


def reset() -> None:
    """Empty every table a run writes, in every service's database."""
    for service in SERVICES:
        with acting(service), connection.cursor() as cursor:
            if service not in _tables:
                _tables[service] = sorted(set(connection.introspection.table_names()) - KEPT)
            # DELETE, not TRUNCATE: the tables are tiny, and TRUNCATE costs file operations
            # each time. Foreign keys are not checked meanwhile (every row goes anyway).
            deletes = " ".join(f'DELETE FROM "{t}";' for t in _tables[service])  # noqa: S608
            cursor.execute(
                f"SET session_replication_role = replica; {deletes} "
                "SET session_replication_role = DEFAULT"
            )


def vacuum() -> None:
    """VACUUM every table a run writes. Each run deletes what the one before wrote; where
    autovacuum is off (this project's CI machine), the dead rows of thousands of runs made every
    scan slower: 2.8 runs/s at the start of 5,000, 0.4 by the 2,500th."""
    for service in SERVICES:
        with acting(service), connection.cursor() as cursor:
            for table in _tables.get(service, ()):
                cursor.execute(f'VACUUM "{table}"')


class Sink:
    """Where the simulated relay puts what it publishes (the scheduler)."""

    def publish(self, messages: Sequence[Outgoing]) -> None:
        raise NotImplementedError


class _Publisher:
    """The relay's publisher, with the scheduler in place of Redis."""

    backlogged = False

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def publish(self, messages: Sequence[Outgoing]) -> dict[str, Exception]:
        """Everything is taken: the scheduler refuses no queue (as Redis's refusals per queue
        would be)."""
        self.sink.publish(messages)
        return {}

    def close(self) -> None:
        pass


class Relays:
    """One production relay per service, publishing to the scheduler."""

    def __init__(self, sink: Sink) -> None:
        publisher = cast(Publisher, _Publisher(sink))
        self.relays = {s: Relay(publisher, batch_size=1000) for s in SERVICES}

    def drain(self, service: str) -> None:
        """Publish everything ``service`` has committed to its outbox (call while it acts)."""
        relay = self.relays[service]
        while relay.relay_batch() >= relay.batch_size:
            pass
