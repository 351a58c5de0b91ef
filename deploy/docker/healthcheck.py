"""``python -m deploy.docker.healthcheck URL``: exit 0 if URL answers 2xx, else 1.

The image has no curl. ``{SERVICE}`` in URL becomes the container's ``SERVICE``, so one
compose definition checks all four web containers.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def check(url: str) -> str | None:
    """The reason URL is unhealthy, or None."""
    try:
        with urllib.request.urlopen(url, timeout=4) as reply:  # noqa: S310 — our own loopback URL
            return None if 200 <= reply.status < 300 else f"HTTP {reply.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(exc)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m deploy.docker.healthcheck URL", file=sys.stderr)
        return 2
    url = argv[0].replace("{SERVICE}", os.environ.get("SERVICE", ""))
    problem = check(url)
    if problem:
        print(f"{url}: {problem}")  # Docker keeps it in the container's health log
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
