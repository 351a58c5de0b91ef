"""Waiting until something holds: the one polling loop of the tests and tools, free of Django
(the end-to-end tests and the browser test import it without settings)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    check: Callable[[], Any], *, timeout_s: float = 20.0, every_s: float = 0.05, what: str = ""
) -> Any:
    """``check()``'s first truthy answer, asked every ``every_s``; past ``timeout_s`` an
    AssertionError naming ``what`` (or the check) and its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what or check}: still {answer!r} after {timeout_s:g}s (not true in time)"
            )
        time.sleep(every_s)
