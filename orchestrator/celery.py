import os

from common.messaging.celery import housekeeping_schedule, make_celery_app

app = make_celery_app("orchestrator")
app.conf.imports = (*app.conf.imports, "orchestrator.sagas.tasks")
# The one beat of the system runs here (DESIGN.md §3): saga deadlines, and housekeeping.
_sweep_every = float(os.environ.get("SAGA_SWEEP_EVERY_S", "1.0"))
app.conf.beat_schedule = {
    "sweep-sagas": {
        "task": "sagas.sweep",
        "schedule": _sweep_every,
        "options": {"queue": "orchestrator", "expires": max(_sweep_every * 5, 5.0)},
    },
    **housekeeping_schedule(),
}
