"""How a service declares its message handlers: one table from message type to function.

A command handler returns the result of its reply (a dict), or raises ``BusinessError``, which
undoes its writes and becomes a failure reply carrying the error's code as reason, or returns a
``Reply`` itself (a failure whose writes stay). Event and reply handlers return ``None``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from django.conf import settings
from django.utils.module_loading import import_string

from common.messaging.contract import Reply
from common.messaging.envelope import Envelope

Handler: TypeAlias = Callable[[Envelope, Any], dict[str, Any] | Reply | None]
HandlerTable: TypeAlias = Mapping[str, Handler]


@functools.cache
def _load(path: str) -> HandlerTable:
    table: HandlerTable = import_string(path)
    return table


def service_handlers() -> HandlerTable:
    """The handler table named by the ``MESSAGE_HANDLERS`` setting."""
    return _load(settings.MESSAGE_HANDLERS)
