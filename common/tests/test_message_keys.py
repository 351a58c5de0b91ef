"""``manage.py message_key_add``: a new key pair where the service reads its keys."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from pytest_django.fixtures import Settings as SettingsWrapper

from common.messaging.keys import load_key_ring


def test_message_key_add_makes_the_pair_the_service_then_signs_with(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    settings.MESSAGE_SIGNING_KEYS_DIR = tmp_path / "account"
    settings.MESSAGE_VERIFY_KEYS_DIR = tmp_path / "public"
    out = StringIO()

    call_command("message_key_add", "--kid", "20270101T000000Z", stdout=out)

    assert (tmp_path / "account" / "account.20270101T000000Z.key").is_file()
    assert (tmp_path / "public" / "account.20270101T000000Z.pub").is_file()
    ring = load_key_ring(
        "account", signing_dir=tmp_path / "account", verify_dir=tmp_path / "public"
    )
    assert ring.signer is not None and ring.signer.kid == "20270101T000000Z"
    assert "20270101T000000Z" in ring.public["account"]
    with pytest.raises(CommandError, match="exists already"):
        call_command("message_key_add", "--kid", "20270101T000000Z", stdout=out)
