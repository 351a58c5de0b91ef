"""The web processes' access log: every atom of its format comes from the lean logger."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from pytest_django.fixtures import Settings as SettingsWrapper

from common import gunicorn_conf
from common.messaging.keys import KeyConfigError


def test_the_access_log_is_one_json_object_per_request(capsys: pytest.CaptureFixture[str]) -> None:
    config = Config()
    config.set("accesslog", "-")
    logger = gunicorn_conf.Logger(config)
    response = SimpleNamespace(status="202 Accepted", sent=311, headers=[])
    forged = 'curl/8" 500 0 request_id=someone-else "x'
    request = SimpleNamespace(headers=[("HOST", "svc"), ("X-FORWARDED-FOR", "203.0.113.9")])
    environ = {
        "REMOTE_ADDR": "203.0.113.9",
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/api/v1/checkouts",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": forged,
        "REQUEST_ID": "abc12345",
    }

    logger.access(response, request, environ, timedelta(milliseconds=12))

    [line] = capsys.readouterr().out.splitlines()
    logged = json.loads(line)
    assert set(logged) == set(gunicorn_conf.ACCESS_LOG_FIELDS)
    assert (logged["client"], logged["request"], logged["status"]) == (
        "203.0.113.9",
        "POST /api/v1/checkouts HTTP/1.1",
        "202",
    )
    assert (logged["bytes"], logged["duration_ms"], logged["request_id"]) == ("311", 12, "abc12345")
    assert (logged["forwarded_for"], logged["user_agent"]) == ("203.0.113.9", forged)


def test_web_and_worker_processes_refuse_to_start_without_their_message_keys(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    from common.messaging.celery import _load_message_keys

    settings.MESSAGE_SIGNING_KEYS_DIR = tmp_path / "nowhere"

    with pytest.raises(KeyConfigError, match="message_key_add"):
        gunicorn_conf.when_ready(None)
    with pytest.raises(KeyConfigError):
        _load_message_keys()


def test_no_control_socket_is_opened() -> None:
    # Its default path is per user ($HOME/.gunicorn): two stacks on one machine would share it,
    # and a container's read-only HOME refuses it.
    config = Config()
    config.set("control_socket_disable", gunicorn_conf.control_socket_disable)

    assert config.control_socket_disable is True
