"""Messages the order service handles: one table, message type → function."""

from __future__ import annotations

from common.inbox.handlers import HandlerTable

HANDLERS: HandlerTable = {}
