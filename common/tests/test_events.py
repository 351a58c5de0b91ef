"""Task events for Flower: every one but task-started, from any process, Django set up or not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from celery import current_app

ROOT = Path(__file__).resolve().parents[2]


def test_the_dispatcher_sends_every_task_event_but_task_started() -> None:
    with current_app.connection_for_write() as connection:
        dispatcher = current_app.events.Dispatcher(connection, buffer_group=["task"])
        for event in ("task-received", "task-started", "task-succeeded"):
            dispatcher.send(event, uuid="m-1")
        sent = [event["type"] for event in dispatcher._group_buffer["task"]]
        dispatcher.close()
    assert sent == ["task-received", "task-succeeded"]


def test_a_process_without_django_set_up_can_send_a_task() -> None:
    # Sending builds the app's event dispatcher; its module must not need Django's app registry.
    code = (
        "from account.celery import app\n"
        "with app.connection_for_write() as c:\n"
        "    app.events.Dispatcher(c, enabled=False).close()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
