"""Service log lines are JSON objects: whatever a message or request id holds, it cannot forge a
field or a line."""

from __future__ import annotations

import json
import logging
import logging.config
from typing import Any

from django.conf import settings

from common.api.request_id import RequestIdFilter
from common.messaging.celery import QuietRoutineTasks
from common.messaging.envelope import caused_by


def formatted(message: str, **cause: str) -> str:
    """One record as the services' console handler writes it."""
    config: dict[str, Any] = settings.LOGGING
    formatter = logging.config.DictConfigurator(config).configure_formatter(
        dict(config["formatters"]["json"])
    )
    record = logging.LogRecord("cafe.test", logging.WARNING, __file__, 1, message, None, None)
    with caused_by(**cause):
        RequestIdFilter().filter(record)
    return formatter.format(record)


def test_the_console_handler_writes_json() -> None:
    assert settings.LOGGING["handlers"]["console"]["formatter"] == "json"
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["request_id"]


def test_a_line_is_one_json_object_with_the_request_id_and_service() -> None:
    line = formatted("deposit done", request_id="gw-12345678")

    assert "\n" not in line
    assert json.loads(line) == {
        "time": json.loads(line)["time"],
        "level": "WARNING",
        "logger": "cafe.test",
        "request_id": "gw-12345678",
        "message": "deposit done",
        "service": settings.SERVICE_NAME,
    }


def test_a_forged_message_stays_inside_its_field() -> None:
    forged = 'ok"\n{"level": "ERROR", "request_id": "someone-else", "message": "forged"}'

    line = formatted(forged, request_id="gw-12345678")

    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["message"], parsed["request_id"], parsed["level"]) == (
        forged,
        "gw-12345678",
        "WARNING",
    )


def _celery_record(logger: str, msg: str, args: object, **data: object) -> logging.LogRecord:
    record = logging.LogRecord(logger, logging.INFO, __file__, 1, msg, args, None)  # type: ignore[arg-type]
    if data:
        record.data = data
    return record


def test_the_per_second_sweep_is_not_logged_unless_it_moved_sagas() -> None:
    quiet = next(
        f for f in logging.getLogger("celery.app.trace").filters if isinstance(f, QuietRoutineTasks)
    )
    worker = "celery.app.trace"

    assert not quiet.filter(
        _celery_record(worker, "ok", None, name="sagas.sweep", return_value="0")
    )
    assert quiet.filter(_celery_record(worker, "ok", None, name="sagas.sweep", return_value="3"))
    assert quiet.filter(_celery_record(worker, "ok", None, name="inbox.consume", return_value="0"))
    beat = "Scheduler: Sending due task %s (%s)"
    assert not quiet.filter(_celery_record("celery.beat", beat, ("sweep-sagas", "sagas.sweep")))
    assert quiet.filter(_celery_record("celery.beat", beat, ("prune", "housekeeping.prune")))
    failed = _celery_record(worker, "boom", None, name="sagas.sweep")
    failed.levelno = logging.ERROR
    assert quiet.filter(failed)
