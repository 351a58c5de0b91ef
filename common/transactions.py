"""The transaction boundary of a write use-case."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import transaction
from django.db.transaction import Atomic

_in_handler: ContextVar[bool] = ContextVar("in_message_handler", default=False)


@contextmanager
def message_handler_transaction(*, undo_on_failure: bool) -> Iterator[None]:
    """Run a message handler inside the inbox's transaction, as one unit that use-cases inside
    join without savepoints of their own. With ``undo_on_failure`` (commands: a business
    failure is answered, so the inbox row must stay) the unit has its own savepoint."""
    token = _in_handler.set(True)
    try:
        with transaction.atomic(savepoint=undo_on_failure):
            yield
    finally:
        _in_handler.reset(token)


def use_case_atomic() -> Atomic:
    """A use-case's transaction. Inside a message handler it joins the handler's transaction
    without a savepoint of its own (two round trips saved per message; the handler's unit
    already undoes a failure). Anywhere else it is a normal ``atomic()`` block."""
    return transaction.atomic(savepoint=not _in_handler.get())
