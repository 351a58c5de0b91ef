"""What signing and verifying costs per message: ``python -m tests.bench.signing``.

Pure CPU, one process, keys in memory; the envelope is a saga's ``account.debit`` with its
correlation and tracing headers. Prints microseconds per message for:

- sign: the canonical form and the Ed25519 signature (what ``outbox_put`` adds per row);
- verify: the canonical form and the signature check (what ``decode`` adds);
- decode: the whole of ``decode`` now (parse, verify, envelope, route, payload), beside the
  envelope and payload validation alone (what ``decode`` did before signing).
"""

from __future__ import annotations

import json
import timeit
import uuid
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from common.messaging.contract import AccountMovement, message_type
from common.messaging.envelope import Correlation, Envelope, decode, new_command
from common.messaging.signing import KeyRing, SigningKey, canonical

RUNS = 5_000


def per_message_us(fn: Callable[[], object], runs: int = RUNS) -> float:
    return min(timeit.repeat(fn, number=runs, repeat=3)) / runs * 1e6


def main() -> None:
    # Envelopes are stamped with ``common.clock.now()``, which is Django's aware clock.
    if not settings.configured:
        settings.configure(USE_TZ=True)
    key = Ed25519PrivateKey.generate()
    orchestrator = KeyRing(
        signer=SigningKey("orchestrator", "k1", key),
        public={"orchestrator": {"k1": key.public_key()}},
    )
    command = new_command(
        "account.debit",
        AccountMovement(customer_id=uuid.uuid4(), order_id=uuid.uuid4(), amount=1260),
        source="orchestrator",
        correlation=Correlation(saga_id=uuid.uuid4(), step="debit", attempt=1),
    ).model_copy(
        update={
            "headers": {
                "trace_id": str(uuid.uuid4()),
                "request_id": "a" * 32,
                "causation_id": str(uuid.uuid4()),
            }
        }
    )
    body = command.to_json_dict()
    signed = orchestrator.sign(body)
    raw = json.dumps(signed)
    spec = message_type("account.debit")

    def before() -> None:
        envelope = Envelope.model_validate_json(raw)
        spec.payload.model_validate(envelope.payload)

    figures = {
        "sign (canonical + Ed25519)": per_message_us(lambda: orchestrator.sign(body)),
        "verify (canonical + Ed25519)": per_message_us(lambda: orchestrator.verify(signed)),
        "  of which canonical form": per_message_us(lambda: canonical(signed)),
        "decode, now (parse, verify, validate, route)": per_message_us(
            lambda: decode(raw, receiver="account", keys=orchestrator)
        ),
        "decode, before (validate only)": per_message_us(before),
    }
    print(f"envelope: {len(raw)} bytes signed")
    for name, us in figures.items():
        print(f"{name:<46} {us:8.1f} µs")
    added = (
        figures["sign (canonical + Ed25519)"]
        + figures["decode, now (parse, verify, validate, route)"]
        - figures["decode, before (validate only)"]
    )
    print(f"{'added per message (sign + decode − before)':<46} {added:8.1f} µs")
    print(f"{'a checkout (8 messages)':<46} {8 * added / 1000:8.2f} ms")


if __name__ == "__main__":
    main()
