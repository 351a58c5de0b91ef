"""The local stack's identity provider settings: a token signing key made for this stack (under
its own directory, never committed), and where every service finds the issuer and its keys."""

from __future__ import annotations

import os
from pathlib import Path

from common.auth.keys import key_add
from deploy.local.layout import Stack, log


def token_keys_dir(stack: Stack) -> Path:
    return stack.dir / "token-keys"


def ensure_token_keys(stack: Stack) -> Path:
    """A local key pair for the bundled provider, made once (``make up`` is a development stack;
    elsewhere keys come from a mounted secret, see README "Identity and access")."""
    directory = token_keys_dir(stack)
    if not any(directory.glob("*.pem")):
        key = key_add(directory)
        log(f"made a local token signing key {key.kid} in {directory}")
    return directory


def identity_env(stack: Stack, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Issuer, audience and JWKS address for every process. An OIDC_* value already set in the
    environment wins (an external OpenID provider configured instead of the bundled one)."""
    environ = dict(os.environ if environ is None else environ)
    issuer = f"{stack.url}/customer"
    jwks = f"http://127.0.0.1:{stack.service_port('customer')}/customer/.well-known/jwks.json"
    return {
        "TOKEN_ISSUER": environ.get("TOKEN_ISSUER", issuer),
        "OIDC_ISSUER": environ.get("OIDC_ISSUER", issuer),
        "OIDC_JWKS_URL": environ.get("OIDC_JWKS_URL", jwks),
    }
