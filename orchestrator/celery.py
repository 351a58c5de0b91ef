import os

from common.messaging.celery import housekeeping_schedule, make_celery_app

app = make_celery_app("orchestrator")
app.conf.imports = (*app.conf.imports, "orchestrator.sagas.tasks")
# The one beat of the system runs here (DESIGN.md §3): saga deadlines, and housekeeping.
_sweep_every = float(os.environ.get("SAGA_SWEEP_EVERY_S", "1.0"))
app.conf.beat_schedule = {
    # No expiry: the sweep waits on the same FIFO queue as the replies, so behind a backlog
    # longer than any expiry every sweep would expire unrun and no deadline would ever fire.
    # Sweeps that queued up meanwhile cost one indexed query each once they run.
    "sweep-sagas": {
        "task": "sagas.sweep",
        "schedule": _sweep_every,
        "options": {"queue": "orchestrator"},
    },
    **housekeeping_schedule(),
}
