"""The beat's deadline sweep reaches the worker however long the queue in front of it is."""

from __future__ import annotations

from datetime import timedelta

from celery.utils.time import maybe_make_aware
from django.utils import timezone

from orchestrator.celery import app


def test_a_sweep_sent_behind_a_long_backlog_still_runs() -> None:
    # It shares the FIFO queue with the replies: a sweep that expires while it waits behind
    # a backlog never runs, and then no deadline fires at all (it expired after 5 s).
    entry = app.conf.beat_schedule["sweep-sagas"]
    sent = timezone.now()
    expires = entry["options"].get("expires")
    reached_the_worker = sent + timedelta(minutes=10)

    assert entry["options"]["queue"] == "orchestrator"
    assert (
        expires is None or maybe_make_aware(sent + timedelta(seconds=expires)) > reached_the_worker
    )
