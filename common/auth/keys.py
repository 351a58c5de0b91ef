"""The bundled identity provider's signing keys: a directory of ES256 private keys, one file each.

``<kid>.pem`` (PKCS#8, P-256) per key; the kid starts with the key's creation time
(``20261201T101500123456Z-3fa9c1``). Every key in the directory is published in the JWKS at once, but a
new key signs only ``TOKEN_KEY_ACTIVATE_AFTER_S`` after it was made: by then every verifier (the
gateway's JWKS cache included) has had time to fetch it, so rotation needs no downtime. The old
key stays published until ``prune`` removes it, once every token it signed has expired.

The directory comes from a mounted secret or the environment (``TOKEN_KEYS_DIR``); nothing here
makes a key unless asked to (``manage.py token_key_add``; ``make up`` asks for a local one).
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ALGORITHM = "ES256"
SUFFIX = ".pem"
_KID_TIME = "%Y%m%dT%H%M%S%fZ"


class NoSigningKey(RuntimeError):
    """The identity provider has no key to sign with (TOKEN_KEYS_DIR unset, missing or empty)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    created_at: datetime
    private_key: ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def _created_at(kid: str) -> datetime:
    return datetime.strptime(kid.split("-", 1)[0], _KID_TIME).replace(tzinfo=UTC)


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[SigningKey, ...]  # oldest first
    activate_after: timedelta

    @classmethod
    def load(cls, directory: Path, *, activate_after_s: float) -> KeyRing:
        keys = []
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            kid = path.name.removesuffix(SUFFIX)
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(private, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path} is not an EC private key")
            keys.append(SigningKey(kid, _created_at(kid), private))
        keys.sort(key=lambda k: (k.created_at, k.kid))
        return cls(tuple(keys), timedelta(seconds=activate_after_s))

    def active_since(self, key: SigningKey) -> datetime:
        # The first key ever signs at once: there is no older one that verifiers already know.
        return key.created_at if key is self.keys[0] else key.created_at + self.activate_after

    def signing_key(self, now: datetime) -> SigningKey:
        if not self.keys:
            raise NoSigningKey("no signing key in TOKEN_KEYS_DIR")
        active = [k for k in self.keys if self.active_since(k) <= now]
        return active[-1] if active else self.keys[0]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def retired(self, now: datetime, *, token_lifetime_s: float) -> list[SigningKey]:
        """Keys no token can still need: replaced by a newer active key longer ago than a token
        lives (plus a minute of clock skew)."""
        grace = timedelta(seconds=token_lifetime_s + 60)
        current = self.signing_key(now)
        out = []
        for older, newer in zip(self.keys, self.keys[1:], strict=False):
            if older is not current and self.active_since(newer) + grace <= now:
                out.append(older)
        return out


def key_add(directory: Path, *, now: datetime | None = None) -> SigningKey:
    """Make a new P-256 key in ``directory`` (created 0700 if missing), file mode 0600."""
    now = now or datetime.now(UTC)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    kid = f"{now:{_KID_TIME}}-{secrets.token_hex(3)}"
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written whole, then renamed: a process reading the directory never sees half a key.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".new-")
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    os.chmod(tmp, 0o600)
    os.replace(tmp, directory / f"{kid}{SUFFIX}")
    return SigningKey(kid, _created_at(kid), private)


def key_remove(directory: Path, kid: str) -> None:
    (directory / f"{kid}{SUFFIX}").unlink()


class KeyDirectory:
    """The key ring of a directory, loaded again when the directory changes (a key added or
    removed by rotation, a secret remounted); looked at no more than once a second."""

    def __init__(self, directory: Path, *, activate_after_s: float) -> None:
        self.directory = directory
        self.activate_after_s = activate_after_s
        self._lock = threading.Lock()
        self._ring: KeyRing | None = None
        self._stamp: tuple[int, ...] | None = None
        self._checked = 0.0

    def _fingerprint(self) -> tuple[int, ...]:
        try:
            return (self.directory.stat().st_mtime_ns, len(list(self.directory.glob(f"*{SUFFIX}"))))
        except FileNotFoundError:
            return ()

    def ring(self, *, fresh: bool = False) -> KeyRing:
        now = time.monotonic()
        with self._lock:
            if self._ring is None or fresh or now - self._checked >= 1.0:
                self._checked = now
                stamp = self._fingerprint()
                if self._ring is None or stamp != self._stamp:
                    if not stamp:
                        raise NoSigningKey(f"TOKEN_KEYS_DIR {self.directory} does not exist")
                    self._ring = KeyRing.load(
                        self.directory, activate_after_s=self.activate_after_s
                    )
                    self._stamp = stamp
            return self._ring
