"""Minting access tokens (the bundled identity provider, in the customer service).

RFC 9068's profile: ``typ: at+jwt``; ``iss``, ``sub``, ``aud``, ``exp``, ``iat``, ``jti``,
``client_id`` and a space-separated ``scope``; signed ES256 with the key ring's active key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import jwt

from common.auth.keys import ALGORITHM, KeyRing

CLIENT_ID = "cafe"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 — the OAuth token type, not a secret


def access_token_issue(
    *,
    ring: KeyRing,
    issuer: str,
    audience: str,
    subject: str,
    scopes: list[str],
    lifetime_s: int,
    now: datetime,
) -> IssuedToken:
    key = ring.signing_key(now)
    issued_at = int(now.timestamp())
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + lifetime_s,
        "jti": uuid.uuid4().hex,
        "client_id": CLIENT_ID,
        "scope": " ".join(scopes),
    }
    token = jwt.encode(
        claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "at+jwt"}
    )
    return IssuedToken(access_token=token, expires_in=lifetime_s)
