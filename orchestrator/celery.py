from common.messaging.celery import housekeeping_schedule, make_celery_app

app = make_celery_app("orchestrator")
# The one beat of the system runs here (DESIGN.md §3).
app.conf.beat_schedule = housekeeping_schedule()
