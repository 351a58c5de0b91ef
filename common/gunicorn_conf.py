"""gunicorn settings and hooks shared by every service's web process."""

from __future__ import annotations

import json
import os
from typing import Any

from gunicorn import glogging

from common.api.request_id import ENVIRON_KEY

# The access log is one JSON object per request, like the services' own log lines: the field
# of each atom (Logger.atoms). `h` is REMOTE_ADDR after common.api.request_id has set it to the
# client (gunicorn reads the environ after the response); the request id joins the line to the
# gateway's and Django's.
ACCESS_LOG_FIELDS = {
    "time": "t",
    "client": "h",
    "request": "r",
    "status": "s",
    "bytes": "b",
    "duration_ms": "M",
    "request_id": "{request_id}e",
    "forwarded_for": "{x-forwarded-for}i",
    "user_agent": "a",
}


def when_ready(server: Any) -> None:
    # Refuse to serve without this service's message keys, rather than fail at the first
    # request that writes a message.
    from common.messaging.keys import key_ring

    key_ring()


def post_fork(server: Any, worker: Any) -> None:
    # Each worker exports its own spans from its own thread, which must start after the fork.
    from common import tracing

    tracing.start("web")


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's live gauges must not linger in the shared Prometheus directory.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class Logger(glogging.Logger):
    """gunicorn's logger, building only the atoms ``ACCESS_LOG_FIELDS`` uses. gunicorn's own
    ``atoms`` makes one for every request header, response header and WSGI environ key of every
    request, then escapes them all: that was 0.5 ms of CPU per request, a third of a simple GET."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        line = {field: atoms[atom] for field, atom in ACCESS_LOG_FIELDS.items()}
        self.access_log.info(json.dumps(line, separators=(",", ":")))

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
    ) -> dict[str, Any]:
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        forwarded = next((v for k, v in req.headers if k == "X-FORWARDED-FOR"), "-")
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "t": self.now(),
            "r": f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}",
            "s": status,
            "b": str(sent) if sent is not None else "-",
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
            "a": environ.get("HTTP_USER_AGENT", "-"),
            "{request_id}e": environ.get(ENVIRON_KEY, "-"),
            "{x-forwarded-for}i": forwarded,
        }


logger_class = Logger

# No control socket (gunicorn 25.1+): nothing here uses `gunicornc`, and its default path,
# $HOME/.gunicorn/gunicorn.ctl, is one per user: every stack on a machine would take it from the
# one before (and a container whose HOME is the read-only /app logs "Permission denied").
control_socket_disable = True
