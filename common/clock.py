"""The time and the fresh ids that the message path acts on, read from one place.

Production reads the system clock and ``uuid4``. The simulator (``tests/sim``) installs a virtual
clock and seeded ids with :func:`driven_by`, so one seed replays one run exactly: deadlines,
backoff and the sweep follow its clock, and every message, saga and order id is the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone


@dataclass
class _Sources:
    now: Callable[[], datetime] = timezone.now
    new_id: Callable[[], uuid.UUID] = uuid.uuid4


_sources = _Sources()


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return _sources.now()


def new_id() -> uuid.UUID:
    """A fresh random id for a message, saga, order or customer."""
    return _sources.new_id()


@contextmanager
def driven_by(*, now: Callable[[], datetime], new_id: Callable[[], uuid.UUID]) -> Iterator[None]:
    """Read time and ids from these sources until the block ends (the simulator's seam)."""
    saved = _Sources(_sources.now, _sources.new_id)
    _sources.now, _sources.new_id = now, new_id
    try:
        yield
    finally:
        _sources.now, _sources.new_id = saved.now, saved.new_id
