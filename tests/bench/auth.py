"""Token verification cost per request in a service (issue 9's budget: 0.3 ms of CPU).

    .venv/bin/python -m tests.bench.auth

Times, with CPU time (time.process_time), in one process and the real code: minting a token,
verifying a token the process has not seen (signature, claims, principal), verifying one it has
(the cache), and the whole DRF authentication of a request carrying it. Prints JSON last.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path


def cpu_us(fn: Callable[[], object], number: int) -> float:
    start = time.process_time()
    for _ in range(number):
        fn()
    return round((time.process_time() - start) / number * 1e6, 1)


def main() -> None:
    keys = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "account.settings")
    os.environ["TOKEN_KEYS_DIR"] = str(keys)
    import django

    django.setup()
    from rest_framework.test import APIRequestFactory

    from common.auth.drf import BearerAuthentication
    from common.auth.keys import key_add
    from common.auth.principal import Principal
    from common.auth.verify import TokenVerifier, verifier
    from common.testing import mint_token

    key_add(keys)
    principal = Principal.for_customer(uuid.uuid4())
    fresh_tokens = [mint_token(principal) for _ in range(2000)]
    shared = verifier()
    cold = iter(fresh_tokens)

    def uncached() -> object:
        # A verifier with an empty cache for every token: the signature check every time.
        return TokenVerifier(shared.rules, shared.keys).verify(next(cold))

    token = fresh_tokens[0]
    shared.verify(token)
    factory = APIRequestFactory()
    request = factory.get("/api/v1/accounts/x", HTTP_AUTHORIZATION=f"Bearer {token}")
    from rest_framework.request import Request

    authentication = BearerAuthentication()

    def drf() -> object:
        return authentication.authenticate(Request(request))

    result = {
        "mint_us": cpu_us(lambda: mint_token(principal), 500),
        "verify_uncached_us": cpu_us(uncached, 1500),
        "verify_cached_us": cpu_us(lambda: shared.verify(token), 20000),
        "drf_authenticate_cached_us": cpu_us(drf, 20000),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
