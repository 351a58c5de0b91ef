"""Service names. Each is also its queue name and its URL prefix behind the gateway."""

from typing import Final

SERVICES: Final = ("customer", "account", "order", "orchestrator")
