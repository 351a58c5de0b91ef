"""The local stack's message keys: one Ed25519 key pair per service, made once under var/.

Only what is missing is made: a service that has a private key in its signing directory keeps
it. The directories are those the services read (``MESSAGE_SIGNING_KEYS_DIR`` per service,
``MESSAGE_VERIFY_KEYS_DIR``), by default ``var/message-keys/<service>`` and
``var/message-keys/public``.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.messaging.keys import MESSAGE_KEYS_DIR, generate_key_pair
from common.messaging.routing import SERVICES
from deploy.local.layout import log


def ensure_message_keys(env: dict[str, str] | None = None) -> list[str]:
    """Make a key pair for every service that has none; returns the services given one."""
    env = {**os.environ, **(env or {})}
    verify_dir = Path(env.get("MESSAGE_VERIFY_KEYS_DIR") or MESSAGE_KEYS_DIR / "public")
    made = []
    for service in SERVICES:
        # One signing directory per service, unless the environment names one for all.
        signing_dir = Path(env.get("MESSAGE_SIGNING_KEYS_DIR") or MESSAGE_KEYS_DIR / service)
        if signing_dir.is_dir() and any(signing_dir.glob(f"{service}.*.key")):
            continue
        generate_key_pair(service, signing_dir=signing_dir, verify_dir=verify_dir)
        made.append(service)
    if made:
        log(f"message keys: made a key pair for {', '.join(made)} (public keys in {verify_dir})")
    return made


if __name__ == "__main__":
    # `python -m deploy.local.keys`: the keys `make up` would make, e.g. before `docker compose up`.
    ensure_message_keys()
