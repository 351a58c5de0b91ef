"""gunicorn settings and hooks shared by every service's web process."""

from __future__ import annotations

import os
from typing import Any

# `h` is REMOTE_ADDR after common.api.request_id has set it to the client (gunicorn reads the
# environ after the response); the request id joins the line to the gateway's and Django's.
access_log_format = (
    '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({request_id}e)s '
    'forwarded_for="%({x-forwarded-for}i)s" "%(a)s"'
)


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's live gauges must not linger in the shared Prometheus directory.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
