"""Verifying an access token: signature, algorithm, issuer, audience, expiry — then the principal.

Every service verifies every token itself (the gateway has checked it too, but a request that
reaches a service some other way gets no further). Keys come from the trusted issuer's JWKS
(``OIDC_JWKS_URL``), fetched with PyJWT's JWKS client: cached, fetched again for an unknown
``kid`` (at most once per cooldown, so made-up kids cannot flood the issuer). The bundled
issuer's own process reads its key directory instead of fetching its own JWKS over HTTP.

Verified tokens are remembered until they expire: a client sends the same token for many
requests, and the signature check is most of the cost of a request's authentication.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from common.auth.keys import KeyDirectory, NoSigningKey
from common.auth.principal import Principal

# Asymmetric only: "none" and the HMAC family (whose secret a public JWK could be mistaken for)
# are never accepted, whatever the configuration says.
ASYMMETRIC = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "EdDSA"})
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt", "jwt"})
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


class InvalidToken(Exception):
    """Missing, malformed, expired, wrongly signed or not for us: the caller is not authenticated."""


class KeysUnavailable(Exception):
    """The issuer's keys could not be fetched: nobody can be verified right now."""


class KeySource(Protocol):
    def key(self, kid: str) -> jwt.PyJWK: ...


class RemoteJwks:
    def __init__(self, url: str, *, lifespan_s: float = 300, cooldown_s: float = 5) -> None:
        self.client = jwt.PyJWKClient(
            url, lifespan=lifespan_s, cooldown_duration=cooldown_s, timeout=5
        )

    def key(self, kid: str) -> jwt.PyJWK:
        try:
            return self.client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise KeysUnavailable(str(exc)) from exc
        except jwt.PyJWKClientError as exc:
            raise InvalidToken(f"unknown key id {kid!r}") from exc


class LocalKeys:
    """The bundled issuer's own key directory (the customer service)."""

    def __init__(self, directory: KeyDirectory) -> None:
        self.directory = directory

    def key(self, kid: str) -> jwt.PyJWK:
        try:
            ring = self.directory.ring()
            found = next((k for k in ring.keys if k.kid == kid), None)
            if found is None:  # a key added a moment ago?
                ring = self.directory.ring(fresh=True)
                found = next((k for k in ring.keys if k.kid == kid), None)
        except NoSigningKey as exc:
            raise KeysUnavailable(str(exc)) from exc
        if found is None:
            raise InvalidToken(f"unknown key id {kid!r}")
        return jwt.PyJWK.from_dict(found.public_jwk())


@dataclass(frozen=True)
class Rules:
    issuer: str
    audience: str
    algorithms: frozenset[str]
    customer_claim: str
    operator_scope: str
    leeway_s: float = 30.0


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """RFC 9068's space-separated ``scope``; some providers send a list (``scp``)."""
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return frozenset(raw)
    raise InvalidToken("scope is neither a string nor a list of strings")


class TokenVerifier:
    def __init__(self, rules: Rules, keys: KeySource, *, cache_size: int = 10_000) -> None:
        self.rules = rules
        self.keys = keys
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        now = time.time()
        with self._lock:
            hit = self._cache.get(token)
            if hit is not None and hit[1] > now:
                self._cache.move_to_end(token)
                return hit[0]
        principal, expires = self._verify(token)
        with self._lock:
            self._cache[token] = (principal, expires)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        rules = self.rules
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("malformed token") from exc
        algorithm, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if algorithm not in rules.algorithms:
            raise InvalidToken(f"algorithm {algorithm!r} is not accepted")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES):
            raise InvalidToken(f"token type {typ!r} is not an access token")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token names no key id")
        key = self.keys.key(kid)
        if key.algorithm_name != algorithm:
            raise InvalidToken(f"key {kid!r} is not an {algorithm} key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=rules.audience,
                issuer=rules.issuer,
                leeway=rules.leeway_s,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(str(exc)) from exc
        scopes = scopes_of(claims)
        subject = str(claims["sub"])
        if rules.operator_scope in scopes:
            principal = Principal(subject=subject, operator=True, scopes=scopes)
        else:
            try:
                customer_id = uuid.UUID(str(claims[rules.customer_claim]))
            except (KeyError, ValueError) as exc:
                raise InvalidToken(f"claim {rules.customer_claim!r} names no customer") from exc
            principal = Principal(subject=subject, customer_id=customer_id, scopes=scopes)
        # Never cached past a minute after the leeway: a verifier must notice a removed key.
        return principal, min(float(claims["exp"]) + rules.leeway_s, time.time() + 60)


def rules_from_settings() -> Rules:
    algorithms = frozenset(settings.OIDC_ALGORITHMS)
    refused = algorithms - ASYMMETRIC
    if refused or not algorithms:
        raise ImproperlyConfigured(
            f"OIDC_ALGORITHMS may only name asymmetric algorithms ({', '.join(sorted(ASYMMETRIC))}); "
            f"refused: {', '.join(sorted(refused)) or 'an empty list'}"
        )
    return Rules(
        issuer=settings.OIDC_ISSUER,
        audience=settings.OIDC_AUDIENCE,
        algorithms=algorithms,
        customer_claim=settings.OIDC_CUSTOMER_CLAIM,
        operator_scope=settings.OIDC_OPERATOR_SCOPE,
    )


@functools.cache
def bundled_keys() -> KeyDirectory | None:
    """The bundled provider's key directory, in a process that has one (the customer service)."""
    if not settings.TOKEN_KEYS_DIR:
        return None
    return KeyDirectory(
        Path(settings.TOKEN_KEYS_DIR), activate_after_s=settings.TOKEN_KEY_ACTIVATE_AFTER_S
    )


@functools.cache
def verifier() -> TokenVerifier:
    keys = bundled_keys()
    source: KeySource
    if keys is not None and settings.TOKEN_ISSUER == settings.OIDC_ISSUER:
        source = LocalKeys(keys)
    else:
        source = RemoteJwks(settings.OIDC_JWKS_URL)
    return TokenVerifier(rules_from_settings(), source)


def _reset(*, setting: str, **_: object) -> None:
    if setting.startswith(("OIDC_", "TOKEN_")):
        verifier.cache_clear()
        bundled_keys.cache_clear()


setting_changed.connect(_reset)
