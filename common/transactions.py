"""The transaction boundary of a write use-case, and the row lock most use-cases start with."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from django.db import connection, models, transaction
from django.db.transaction import Atomic, TransactionManagementError

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


M = TypeVar("M", bound=models.Model)


def locked(model: type[M], pk: uuid.UUID | int | str) -> M | None:
    """The row of ``model`` with this primary key, locked ``FOR UPDATE`` until the transaction
    ends; None if there is none. The same as ``select_for_update().filter(pk=pk).first()``,
    with the SQL built once per model: on the message path, where every use-case starts by
    locking its row, Django building that query cost more CPU than running it."""
    if not connection.in_atomic_block:
        raise TransactionManagementError("a row lock outside a transaction ends at once")
    sql, names, converters = _lock_query(model)
    with connection.cursor() as cursor:
        cursor.execute(sql, [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, convert in converters:
        values[index] = convert(values[index])
    return model.from_db(connection.alias, names, values)


@functools.cache
def _lock_query(
    model: type[models.Model],
) -> tuple[str, list[str], list[tuple[int, Callable[[Any], Any]]]]:
    quote = connection.ops.quote_name
    meta = model._meta
    fields = meta.concrete_fields
    columns = ", ".join(quote(field.column) for field in fields)
    sql = (
        f"SELECT {columns} FROM {quote(meta.db_table)} "  # noqa: S608 — names from the model
        f"WHERE {quote(meta.pk.column)} = %s FOR UPDATE"
    )
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for index, field in enumerate(fields):
        column = field.get_col(meta.db_table)
        # (The type stubs lack Field.get_db_converters.)
        for convert in [
            *connection.ops.get_db_converters(column),
            *cast(Any, field).get_db_converters(connection),
        ]:
            converters.append((index, functools.partial(_convert, convert, column)))
    return sql, [field.attname for field in fields], converters


def _convert(convert: Callable[..., Any], column: object, value: Any) -> Any:
    return convert(value, column, connection)
