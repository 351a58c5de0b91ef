"""Message keys on disk: generating a key pair, and loading a service's key ring.

Layout (see README, "Message signing keys"):

- ``MESSAGE_SIGNING_KEYS_DIR``: this service's private key(s), ``<service>.<kid>.key`` (PEM,
  PKCS#8). The service signs with its newest one (the greatest kid; generated kids are UTC
  timestamps). Only files named after the service are read, so one directory may hold them all
  on a developer's machine, while a container mounts only its own.
- ``MESSAGE_VERIFY_KEYS_DIR``: every service's public keys, ``<service>.<kid>.pub`` (PEM).
  A message is accepted if any key listed for its sender verifies it: to rotate, list the new
  public key everywhere first, then give the sender its new private key, and remove the old
  public key once no message signed with it can still arrive.

Keys are never generated on the fly: a missing directory or key is an error that says how to
make one (``manage.py message_key_add``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common.messaging.signing import KeyRing, SigningKey

# Where ``make up`` keeps the local stack's keys; the settings' default when no variable is set.
MESSAGE_KEYS_DIR: Final = Path(__file__).resolve().parents[2] / "var" / "message-keys"

KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
KEY_FILE = re.compile(r"(?P<service>[a-z]+)\.(?P<kid>[A-Za-z0-9_-]{1,64})\.(?P<ext>key|pub)")


class KeyConfigError(RuntimeError):
    """The message keys are missing or unusable; the process cannot send or receive."""


def new_kid(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def generate_key_pair(
    service: str, *, signing_dir: Path, verify_dir: Path, kid: str | None = None
) -> tuple[Path, Path]:
    """Write a new key pair for ``service``; returns (private, public) paths. Never overwrites."""
    kid = kid or new_kid()
    if not KID.fullmatch(kid):
        raise ValueError(f"a kid is 1-64 of [A-Za-z0-9_-], not {kid!r}")
    private = Ed25519PrivateKey.generate()
    signing_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    verify_dir.mkdir(parents=True, exist_ok=True)
    private_path = signing_dir / f"{service}.{kid}.key"
    public_path = verify_dir / f"{service}.{kid}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} exists already")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def _key_files(directory: Path, ext: str) -> Iterable[tuple[str, str, Path]]:
    for path in sorted(directory.iterdir()):
        match = KEY_FILE.fullmatch(path.name)
        if match and match["ext"] == ext:
            yield match["service"], match["kid"], path


def load_signing_key(service: str, directory: Path) -> SigningKey:
    """The newest private key of ``service`` in ``directory``."""
    if not directory.is_dir():
        raise KeyConfigError(
            f"no message signing key directory {directory} for {service}: create a key with "
            f"`manage.py message_key_add --settings={service}.settings` "
            "or set MESSAGE_SIGNING_KEYS_DIR"
        )
    found = sorted((kid, path) for s, kid, path in _key_files(directory, "key") if s == service)
    if not found:
        raise KeyConfigError(f"no {service}.<kid>.key in {directory}")
    kid, path = found[-1]
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyConfigError(f"{path} is not an Ed25519 private key")
    return SigningKey(service=service, kid=kid, private=private)


def load_public_keys(directory: Path) -> dict[str, dict[str, Ed25519PublicKey]]:
    """Every ``<service>.<kid>.pub`` in ``directory``, by service and kid."""
    if not directory.is_dir():
        raise KeyConfigError(
            f"no message verify key directory {directory}: set MESSAGE_VERIFY_KEYS_DIR"
        )
    keys: dict[str, dict[str, Ed25519PublicKey]] = {}
    for service, kid, path in _key_files(directory, "pub"):
        public = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(public, Ed25519PublicKey):
            raise KeyConfigError(f"{path} is not an Ed25519 public key")
        keys.setdefault(service, {})[kid] = public
    return keys


def load_key_ring(service: str, *, signing_dir: Path, verify_dir: Path) -> KeyRing:
    return KeyRing(
        signer=load_signing_key(service, signing_dir), public=load_public_keys(verify_dir)
    )


@functools.cache
def _cached(service: str, signing_dir: str, verify_dir: str) -> KeyRing:
    return load_key_ring(service, signing_dir=Path(signing_dir), verify_dir=Path(verify_dir))


def key_ring() -> KeyRing:
    """This service's key ring, from the Django settings (loaded once per process)."""
    from django.conf import settings

    return _cached(
        settings.SERVICE_NAME,
        str(settings.MESSAGE_SIGNING_KEYS_DIR),
        str(settings.MESSAGE_VERIFY_KEYS_DIR),
    )


def forget_key_rings() -> None:
    """Read the key files again at the next use (after a rotation, or in tests)."""
    _cached.cache_clear()
