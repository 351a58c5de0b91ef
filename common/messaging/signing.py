"""Signing envelopes with the sender's own Ed25519 key, and verifying them on receipt.

Ed25519 rather than HMAC: with HMAC every verifier would hold every sender's secret and could
forge for it; here a service holds only its own private key and the others' public keys.

What is signed is the envelope as sent to one queue (every field but ``signature``, the
destination included), serialised canonically: JSON with sorted keys, no whitespace, UTF-8,
behind a fixed context prefix. The serialisation survives the outbox's ``jsonb`` round trip
(which reorders keys and respaces, but keeps every string, integer and boolean as it was), so
the receiver recomputes it from the document it parsed.

Pure code, no Django and no broker: a :class:`KeyRing` is built from key files
(``common.messaging.keys``) or from keys in memory, and passed in.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CONTEXT = b"cafe-envelope-v1\n"
SIGNATURE_FIELD = "signature"


class BadSignature(Exception):
    """The envelope is unsigned, or its signature does not verify with any key of its sender."""


def canonical(document: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: every field but the signature, in one fixed form."""
    unsigned = {k: v for k, v in document.items() if k != SIGNATURE_FIELD}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return CONTEXT + text.encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SigningKey:
    service: str
    kid: str
    private: Ed25519PrivateKey


class KeyRing:
    """One service's signing key (if it sends) and every sender's public keys, by key id."""

    def __init__(
        self,
        *,
        signer: SigningKey | None,
        public: Mapping[str, Mapping[str, Ed25519PublicKey]],
    ) -> None:
        self.signer = signer
        self.public = {service: dict(keys) for service, keys in public.items()}

    def sign(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """The document with this service's signature (replacing any it had)."""
        if self.signer is None:
            raise BadSignature("this key ring has no signing key")
        if document.get("source") != self.signer.service:
            raise BadSignature(f"{self.signer.service} cannot sign for {document.get('source')!r}")
        sig = self.signer.private.sign(canonical(document))
        return {**document, SIGNATURE_FIELD: {"kid": self.signer.kid, "sig": _b64(sig)}}

    def verify(self, document: Mapping[str, Any]) -> None:
        """Raise :class:`BadSignature` unless a listed key of the claimed source signed it."""
        signature = document.get(SIGNATURE_FIELD)
        if not isinstance(signature, dict):
            raise BadSignature("no signature")
        kid, sig = signature.get("kid"), signature.get("sig")
        source = document.get("source")
        if not isinstance(kid, str) or not isinstance(sig, str) or not isinstance(source, str):
            raise BadSignature("malformed signature")
        key = self.public.get(source, {}).get(kid)
        if key is None:
            raise BadSignature(f"no key {kid!r} listed for sender {source!r}")
        try:
            key.verify(_unb64(sig), canonical(document))
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise BadSignature(f"signature of {source!r} (key {kid!r}) does not verify") from exc
