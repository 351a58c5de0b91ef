"""Run this service's outbox relay until SIGTERM or SIGINT. Several may run at once."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from celery import current_app
from django.core.management.base import BaseCommand, CommandParser

from common import tracing
from common.messaging.transport import Publisher
from common.outbox.relay import Relay, run_relay


class Command(BaseCommand):
    help = "Publish committed outbox rows to their Redis queues (woken by NOTIFY, polls as a safety net)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--poll-interval", type=float, default=None, help="seconds")

    def handle(
        self, *args: Any, batch_size: int | None, poll_interval: float | None, **options: Any
    ) -> None:
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        tracing.start("relay")
        relay = Relay(Publisher(current_app), batch_size=batch_size)
        run_relay(relay, stop=stop, poll_interval_s=poll_interval)
