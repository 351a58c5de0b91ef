"""Serve the Prometheus metrics of a worker or relay pod (mounted from a ConfigMap).

Those processes have no HTTP server. They write their metrics to PROMETHEUS_MULTIPROC_DIR, an
emptyDir this container shares with them, and this sums the files as a web's /metrics does. A
script rather than a module of the image, so the image needs nothing cluster-specific.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector


def main() -> None:
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    start_http_server(int(os.environ.get("METRICS_PORT", "9100")), registry=registry)
    threading.Event().wait()  # the server runs in a daemon thread; keep the process alive


if __name__ == "__main__":
    main()
