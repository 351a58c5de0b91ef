"""`make up` in the foreground streams the processes' logs until the stack stops, also when
`make down` stops it from another shell."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from deploy.local.layout import Stack
from deploy.local.stack import follow_logs


def test_streaming_ends_when_the_stack_is_stopped_with_its_last_lines(tmp_path: Path) -> None:
    stack = Stack(dir=tmp_path, port_base=40000)
    stack.logs.mkdir()
    stack.socket.touch()  # supervisord is running
    (stack.logs / "web.log").write_text("of an earlier run\n")
    lines: list[str] = []
    streaming = threading.Thread(
        target=lambda: lines.extend(follow_logs(stack, ["web", "worker"])), daemon=True
    )
    streaming.start()
    while not (stack.logs / "worker.log").exists():  # it has opened every log
        time.sleep(0.01)
    time.sleep(0.3)

    with (stack.logs / "web.log").open("a") as web, (stack.logs / "worker.log").open("a") as w:
        web.write("started\n")
        w.write("stopping\n")
    stack.socket.unlink()  # `make down`: supervisord shut down
    streaming.join(timeout=5)

    assert not streaming.is_alive()
    assert lines == ["web    | started", "worker | stopping"]
