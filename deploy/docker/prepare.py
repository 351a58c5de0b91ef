"""``python -m deploy.docker.prepare``: everything `docker compose up` needs that is not in git.

- ``.env`` from ``.env.example``, every ``change-me…`` value replaced by a random URL-safe one
  (48 hex digits; FLOWER_BASIC_AUTH keeps its user name). An existing ``.env`` keeps its values;
  only what it lacks, or still has as a placeholder, is filled in.
- the message signing keys (one Ed25519 pair per service) under ``MESSAGE_KEYS_DIR`` and the
  access token signing key under ``TOKEN_KEYS_HOST_DIR`` (both as set in ``.env``, by default
  ``./var/message-keys`` and ``./var/token-keys``), unless they are there already;
- those key directories owned by the image's user (uid 10001), when run as root, so the
  containers can read the keys they mount (mode 0600 files). Otherwise it says what to run.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

from common.auth.keys import SUFFIX, key_add
from common.messaging.keys import generate_key_pair
from common.messaging.routing import SERVICES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / ".env.example"
IMAGE_UID = 10001
_LINE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
_PLACEHOLDER = re.compile(r"change-me[\w-]*")


def parse(text: str) -> dict[str, str]:
    """NAME=value lines (no quoting, as .env.example writes them); comments ignored."""
    return {m["name"]: m["value"] for m in map(_LINE.match, text.splitlines()) if m}


def _secret() -> str:
    return secrets.token_hex(24)


def _filled(value: str) -> str:
    """``value`` with each placeholder replaced by its own random secret."""
    return _PLACEHOLDER.sub(lambda _: _secret(), value)


def fill_env(env_file: Path, example: Path = EXAMPLE) -> list[str]:
    """Write ``env_file``: its own lines, placeholders replaced, then every variable of the
    example it lacked. Returns the names given a value."""
    lines = env_file.read_text().splitlines() if env_file.exists() else []
    changed: list[str] = []
    out = []
    for line in lines:
        m = _LINE.match(line)
        if m and _PLACEHOLDER.search(m["value"]):
            line = f"{m['name']}={_filled(m['value'])}"
            changed.append(m["name"])
        out.append(line)
    have = parse("\n".join(out))
    missing = [(n, v) for n, v in parse(example.read_text()).items() if n not in have]
    if missing and not lines:
        # A new file: the example whole, comments included, filled in.
        out = [
            f"{m['name']}={_filled(m['value'])}" if (m := _LINE.match(line)) else line
            for line in example.read_text().splitlines()
        ]
    elif missing:
        out += ["", f"# Added by deploy/docker/prepare.py from {example.name}."]
        out += [f"{name}={_filled(value)}" for name, value in missing]
    changed += [name for name, _ in missing]
    env_file.touch(mode=0o600)
    env_file.chmod(0o600)
    env_file.write_text("\n".join(out) + "\n")
    return changed


def ensure_keys(message_keys: Path, token_keys: Path) -> list[str]:
    """The message key pairs and the first token key, where missing. Returns what was made."""
    made = []
    for service in SERVICES:
        signing_dir = message_keys / service
        if not any(signing_dir.glob(f"{service}.*.key")):
            generate_key_pair(service, signing_dir=signing_dir, verify_dir=message_keys / "public")
            made.append(f"message key pair of {service}")
    if not any(token_keys.glob(f"*{SUFFIX}")):
        made.append(f"token key {key_add(token_keys).kid}")
    return made


def hand_to_image_user(*directories: Path) -> bool:
    """chown -R the directories to the image's user; False when not root (nothing done)."""
    if os.geteuid() != 0:
        return False
    for directory in directories:
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, IMAGE_UID, IMAGE_UID, follow_symlinks=False)
    return True


def _host_path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    args = parser.parse_args(argv)
    changed = fill_env(args.env_file)
    print(f"{args.env_file}: " + (f"set {', '.join(changed)}" if changed else "complete"))
    env = parse(args.env_file.read_text())
    message_keys = _host_path(env.get("MESSAGE_KEYS_DIR", "./var/message-keys"))
    token_keys = _host_path(env.get("TOKEN_KEYS_HOST_DIR", "./var/token-keys"))
    for made in ensure_keys(message_keys, token_keys):
        print(f"made the {made}")
    if not hand_to_image_user(message_keys, token_keys):
        print(
            f"the containers run as uid {IMAGE_UID} and must read the keys: "
            f"sudo chown -R {IMAGE_UID}:{IMAGE_UID} {message_keys} {token_keys}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
