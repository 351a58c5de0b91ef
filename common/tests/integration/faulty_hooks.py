"""A fault around the handling of an envelope, loaded into a test's worker with ``--include``:
code that wraps each envelope's handling (as a tracing span does) raises out of
``inbox.consume``, as many times as the Redis counter ``faults:consume`` says. (Celery's task
signals cannot serve: Celery logs and swallows what their receivers raise.)"""

from __future__ import annotations

import functools
import os
from typing import Any

import redis

from common.inbox import tasks

FAULTS_KEY = "faults:consume"
_handle = tasks.consume_one


@functools.wraps(_handle)
def _failing_while_counted(raw: str, **kwargs: Any) -> tasks.Outcome:
    if redis.Redis.from_url(os.environ["REDIS_URL"]).decr(FAULTS_KEY) >= 0:
        raise RuntimeError("the code around the handler failed")
    return _handle(raw, **kwargs)


tasks.consume_one = _failing_while_counted
