"""Signing and verifying envelopes, and the contract's routes: pure functions, keys in memory."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.messaging.contract import CustomerRegistered, OrderRef, Reply
from common.messaging.envelope import (
    Correlation,
    InvalidMessage,
    decode,
    new_command,
    new_event,
    new_reply,
)
from common.messaging.keys import (
    KeyConfigError,
    generate_key_pair,
    load_key_ring,
    load_public_keys,
    load_signing_key,
)
from common.messaging.routing import SERVICES
from common.messaging.signing import BadSignature, KeyRing, SigningKey, canonical
from common.tests.support import debit_command, registered_event

PRIVATE = {service: Ed25519PrivateKey.generate() for service in SERVICES}
PUBLIC = {service: {"k1": key.public_key()} for service, key in PRIVATE.items()}


def ring(service: str, *, kid: str = "k1", key: Ed25519PrivateKey | None = None) -> KeyRing:
    return KeyRing(
        signer=SigningKey(service=service, kid=kid, private=key or PRIVATE[service]),
        public=PUBLIC,
    )


def wire(document: dict[str, Any], *, by: str | None = None, **ring_args: Any) -> str:
    return json.dumps(ring(by or document["source"], **ring_args).sign(document))


def received(raw: str | bytes, receiver: str) -> tuple[Any, Any]:
    return decode(raw, receiver=receiver, keys=ring(receiver))


def debit() -> dict[str, Any]:
    return debit_command(uuid.uuid4(), 300).to_json_dict()


def forged_reason(raw: str, receiver: str = "account") -> str:
    with pytest.raises(InvalidMessage) as refused:
        received(raw, receiver)
    assert refused.value.reason == "forged"
    return refused.value.detail


# --- signatures --------------------------------------------------------------------------------


def test_a_signed_envelope_is_accepted_by_its_receiver() -> None:
    envelope, payload = received(wire(debit()), "account")

    assert envelope.type == "account.debit" and payload.amount == 300
    assert envelope.signature is not None and envelope.signature.kid == "k1"


def test_the_signature_survives_the_outboxs_jsonb_round_trip() -> None:
    signed = ring("orchestrator").sign(debit())
    shuffled = dict(random.sample(list(signed.items()), len(signed)))  # jsonb reorders keys
    text = json.dumps(shuffled, indent=1, ensure_ascii=True)  # and respaces

    envelope, _ = received(text, "account")

    assert envelope.id == uuid.UUID(signed["id"])


ALTERED: dict[str, Any] = {
    "id": str(uuid.uuid4()),
    "type": "account.refund",
    "kind": "event",
    "source": "customer",
    "destination": "order",
    "reply_to": "account",
    "created_at": "2020-01-01T00:00:00Z",
    "correlation": {"saga_id": str(uuid.uuid4())},
    "headers": {"trace_id": "mine"},
    "payload": {"customer_id": str(uuid.uuid4()), "order_id": str(uuid.uuid4()), "amount": 1},
    "version": 2,
}


@pytest.mark.parametrize("field", sorted(ALTERED))
def test_a_genuine_envelope_altered_in_any_field_under_its_old_signature_is_forged(
    field: str,
) -> None:
    signed = ring("orchestrator").sign(debit())

    forged_reason(json.dumps({**signed, field: ALTERED[field]}))


def test_an_unsigned_envelope_is_forged() -> None:
    assert forged_reason(json.dumps(debit())) == "no signature"


def test_an_invalid_signature_is_forged() -> None:
    signed = ring("orchestrator").sign(debit())
    signed["signature"] = {"kid": "k1", "sig": "A" * 86}

    assert "does not verify" in forged_reason(json.dumps(signed))


def test_a_signature_made_with_another_services_key_is_forged() -> None:
    # The account service's own key, passed off as the orchestrator's under the orchestrator's kid.
    raw = json.dumps(
        KeyRing(signer=SigningKey("orchestrator", "k1", PRIVATE["account"]), public=PUBLIC).sign(
            debit()
        )
    )

    assert "does not verify" in forged_reason(raw)


def test_a_key_listed_for_no_sender_is_forged() -> None:
    raw = wire(debit(), kid="k9", key=Ed25519PrivateKey.generate())

    assert "no key 'k9'" in forged_reason(raw)


def test_a_service_signs_only_its_own_messages() -> None:
    with pytest.raises(BadSignature):
        ring("account").sign(debit())  # the orchestrator's command


def test_after_a_rotation_both_the_old_and_the_new_key_verify() -> None:
    new = Ed25519PrivateKey.generate()
    PUBLIC["orchestrator"]["k2"] = new.public_key()
    try:
        old_raw, new_raw = wire(debit()), wire(debit(), kid="k2", key=new)

        assert received(old_raw, "account")[0].signature.kid == "k1"
        assert received(new_raw, "account")[0].signature.kid == "k2"
    finally:
        del PUBLIC["orchestrator"]["k2"]


def test_canonical_form_excludes_only_the_signature() -> None:
    signed = ring("orchestrator").sign(debit())

    assert canonical(signed) == canonical({k: v for k, v in signed.items() if k != "signature"})
    assert canonical(signed).startswith(b"cafe-envelope-v1\n")


# --- routes ------------------------------------------------------------------------------------


def command(type_name: str = "account.debit", **changes: Any) -> dict[str, Any]:
    return {**debit(), "type": type_name, **changes}


def test_a_command_from_a_participant_is_forged() -> None:
    # The customer service, signing with its own key, asks the account service for a refund.
    raw = wire(command("account.refund", source="customer", reply_to="customer"))

    assert "may be sent by orchestrator" in forged_reason(raw)


def test_a_command_asking_for_replies_at_a_queue_the_contract_does_not_name_is_forged() -> None:
    for reply_to in ("account", "celery", "unacked", None):
        detail = forged_reason(wire(command(reply_to=reply_to)))
        assert "asks for replies at" in detail


def test_a_message_addressed_to_another_service_is_forged() -> None:
    # A debit the contract sends only to the account service, addressed (and signed) for order.
    assert "may go to account" in forged_reason(wire(command(destination="order")), "order")


def test_a_message_delivered_to_a_queue_it_was_not_addressed_to_is_forged() -> None:
    registered = registered_event().to_json_dict() | {"destination": "account"}

    # Genuinely signed for the account queue, then pushed onto the order queue.
    detail = forged_reason(wire(registered), receiver="order")

    assert detail == "addressed to 'account', received by 'order'"


def reply_of(command_doc: dict[str, Any], *, source: str) -> dict[str, Any]:
    cmd, _ = received(
        json.dumps(ring("orchestrator").sign(command_doc)), command_doc["destination"]
    )
    return new_reply(cmd, Reply(ok=True), source=source).to_json_dict()


def test_a_reply_from_a_service_that_was_not_commanded_is_forged() -> None:
    reply = reply_of(debit(), source="customer")  # the customer service answering a debit

    assert "may be sent by account" in forged_reason(wire(reply), receiver="orchestrator")


def test_a_reply_to_a_participant_is_forged() -> None:
    reply = reply_of(debit(), source="account") | {"destination": "customer"}

    assert "may go to orchestrator" in forged_reason(wire(reply), receiver="customer")


def test_an_event_from_another_service_than_its_emitter_is_forged() -> None:
    payload = CustomerRegistered(customer_id=uuid.uuid4(), name="Eve", email="eve@example.com")
    event = new_event("customer.registered", payload, source="order").to_json_dict()
    event["destination"] = "account"

    assert "may be sent by customer" in forged_reason(wire(event))


def test_a_reply_is_only_ever_addressed_to_a_queue_the_contract_names() -> None:
    cmd = debit_command(uuid.uuid4(), 1).model_copy(update={"reply_to": "unacked_index"})

    with pytest.raises(ValueError, match="cannot be sent"):
        new_reply(cmd, Reply(ok=True), source="account")


def test_the_genuine_route_of_every_kind_is_accepted() -> None:
    cmd = new_command(
        "order.approve",
        OrderRef(order_id=uuid.uuid4()),
        source="orchestrator",
        correlation=Correlation(saga_id=uuid.uuid4()),
    )
    envelope, _ = received(wire(cmd.to_json_dict()), "order")
    reply = new_reply(envelope, Reply(ok=True), source="order")
    event = registered_event().to_json_dict() | {"destination": "account"}

    assert received(wire(reply.to_json_dict()), "orchestrator")[0].type == "order.approve.reply"
    assert received(wire(event), "account")[0].type == "customer.registered"


# --- key files ---------------------------------------------------------------------------------


def test_key_files_load_with_the_newest_private_key_signing(tmp_path: Path) -> None:
    private, public = tmp_path / "private", tmp_path / "public"
    generate_key_pair("account", signing_dir=private, verify_dir=public, kid="20260101T000000Z")
    generate_key_pair("account", signing_dir=private, verify_dir=public, kid="20261201T000000Z")
    generate_key_pair("order", signing_dir=private, verify_dir=public, kid="20260101T000000Z")

    keys = load_key_ring("account", signing_dir=private, verify_dir=public)

    assert keys.signer is not None and keys.signer.kid == "20261201T000000Z"
    assert {s: sorted(k) for s, k in load_public_keys(public).items()} == {
        "account": ["20260101T000000Z", "20261201T000000Z"],
        "order": ["20260101T000000Z"],
    }
    assert (private / "account.20261201T000000Z.key").stat().st_mode & 0o777 == 0o600


def test_keys_are_never_overwritten_nor_made_up(tmp_path: Path) -> None:
    generate_key_pair("account", signing_dir=tmp_path, verify_dir=tmp_path, kid="a")

    with pytest.raises(FileExistsError):
        generate_key_pair("account", signing_dir=tmp_path, verify_dir=tmp_path, kid="a")
    with pytest.raises(KeyConfigError, match="message_key_add"):
        load_signing_key("account", tmp_path / "missing")
    with pytest.raises(KeyConfigError, match="no order"):
        load_signing_key("order", tmp_path)
    with pytest.raises(ValueError, match="kid"):
        generate_key_pair("account", signing_dir=tmp_path, verify_dir=tmp_path, kid="../x")
