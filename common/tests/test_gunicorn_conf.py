"""The web processes' access log: every atom of its format comes from the lean logger."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import SafeAtoms
from pytest_django.fixtures import Settings as SettingsWrapper

from common import gunicorn_conf
from common.messaging.keys import KeyConfigError


def test_the_lean_logger_fills_every_atom_of_the_access_log_format() -> None:
    logger = gunicorn_conf.Logger(Config())
    response = SimpleNamespace(status="202 Accepted", sent=311, headers=[])
    request = SimpleNamespace(headers=[("HOST", "svc"), ("X-FORWARDED-FOR", "203.0.113.9")])
    environ = {
        "REMOTE_ADDR": "203.0.113.9",
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/api/v1/checkouts",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": "curl/8",
        "REQUEST_ID": "abc123",
    }
    atoms = logger.atoms(response, request, environ, timedelta(milliseconds=12))

    used = re.findall(r"%\((.+?)\)s", gunicorn_conf.access_log_format)
    assert used and all(name in atoms for name in used), set(used) - set(atoms)
    line = gunicorn_conf.access_log_format % SafeAtoms(atoms)
    assert line.startswith("203.0.113.9 [")
    assert '"POST /api/v1/checkouts HTTP/1.1" 202 311 12ms request_id=abc123' in line
    assert line.endswith('forwarded_for="203.0.113.9" "curl/8"')


def test_web_and_worker_processes_refuse_to_start_without_their_message_keys(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    from common.messaging.celery import _load_message_keys

    settings.MESSAGE_SIGNING_KEYS_DIR = tmp_path / "nowhere"

    with pytest.raises(KeyConfigError, match="message_key_add"):
        gunicorn_conf.when_ready(None)
    with pytest.raises(KeyConfigError):
        _load_message_keys()
