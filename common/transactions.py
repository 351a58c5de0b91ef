"""The transaction boundary of a write use-case."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import transaction
from django.db.transaction import Atomic

_in_handler: ContextVar[bool] = ContextVar("in_message_handler", default=False)


@contextmanager
def message_handler_transaction() -> Iterator[None]:
    """Run a message handler inside the inbox's transaction: use-cases inside join it without
    savepoints of their own. A failure fails the whole message (the inbox decides what then)."""
    token = _in_handler.set(True)
    try:
        yield
    finally:
        _in_handler.reset(token)


def use_case_atomic() -> Atomic:
    """A use-case's transaction. Inside a message handler it joins the handler's transaction
    without a savepoint of its own (two round trips saved per message: a refused command is
    rolled back whole and answered in a fresh transaction). Anywhere else it is a normal
    ``atomic()`` block."""
    return transaction.atomic(savepoint=not _in_handler.get())
