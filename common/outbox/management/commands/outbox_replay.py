"""Publish again the outbox rows sent since a given time (after a broker restore or failover)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime, parse_duration

from common.outbox.services import outbox_replay

SHORT_DURATION = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (naive means UTC), or a duration back from now: ``90s``, ``15m``,
    ``2h``, ``1d``, ``PT15M`` or ``00:15:00``."""
    moment = parse_datetime(text)
    if moment is not None:
        return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)
    short = SHORT_DURATION.match(text)
    span = (
        timedelta(**{UNITS[short["unit"]]: float(short["amount"])})
        if short
        else parse_duration(text)
    )
    if span is None or span <= timedelta(0):
        raise ValueError(f"{text!r} is neither an ISO time nor a positive duration")
    return (now or timezone.now()) - span


class Command(BaseCommand):
    help = (
        "Publish again every outbox row of this service sent since --since (an ISO time, or a "
        "duration back from now such as 15m or 2h), in order; receivers drop what they had."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True)

    def handle(self, *args: Any, since: str, **options: Any) -> None:
        try:
            moment = parse_since(since)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        count = outbox_replay(since=moment)
        self.stdout.write(f"{count} rows sent since {moment.isoformat()} will be published again")
