"""Settings of the orchestrator service: the common base plus its own apps and saga policy."""

from common.settings import service_settings
from common.settings.base import env

globals().update(
    service_settings(
        "orchestrator", apps=["orchestrator.sagas"], handlers="orchestrator.sagas.handlers.HANDLERS"
    )
)

# How long a participant has to answer a command; re-sends back off up to the cap.
SAGA_REPLY_TIMEOUT_S = env.float("SAGA_REPLY_TIMEOUT_S", default=10.0)
SAGA_BACKOFF_CAP_S = env.float("SAGA_BACKOFF_CAP_S", default=60.0)
# Tries of a forward step before it counts as timed out (and the saga compensates).
SAGA_MAX_ATTEMPTS = env.int("SAGA_MAX_ATTEMPTS", default=4)
# Tries of a compensation or post-pivot step before the saga waits for an operator.
SAGA_FAIL_AFTER = env.int("SAGA_FAIL_AFTER", default=10)
SAGA_SWEEP_EVERY_S = env.float("SAGA_SWEEP_EVERY_S", default=1.0)
# Checkouts and cancellations one customer may have running at once (beyond: 429 too_many_sagas).
SAGAS_IN_FLIGHT_PER_CUSTOMER = env.int("SAGAS_IN_FLIGHT_PER_CUSTOMER", default=20)
# Admission control (orchestrator.sagas.admission): new checkouts and cancellations get 503
# overloaded while the orchestrator is behind; thresholds from the measured capacity.
ADMISSION_ENABLED = env.bool("ADMISSION_ENABLED", default=True)
ADMISSION_MAX_QUEUE_WAIT_S = env.float("ADMISSION_MAX_QUEUE_WAIT_S", default=1.0)
ADMISSION_MAX_QUEUE_DEPTH = env.int("ADMISSION_MAX_QUEUE_DEPTH", default=2000)
ADMISSION_MAX_OUTBOX_AGE_S = env.float("ADMISSION_MAX_OUTBOX_AGE_S", default=1.0)
ADMISSION_MAX_LATE_SAGAS = env.int("ADMISSION_MAX_LATE_SAGAS", default=25)
ADMISSION_RETRY_AFTER_S = env.int("ADMISSION_RETRY_AFTER_S", default=1)
ADMISSION_CACHE_S = env.float("ADMISSION_CACHE_S", default=0.5)
# Completed and rejected sagas, with their history, are deleted this long after they finished
# (failed ones wait for an operator and are kept); until then they are found by order id.
SAGA_RETENTION_HOURS = env.float("SAGA_RETENTION_HOURS", default=72.0)
HOUSEKEEPING_PRUNERS = {"sagas": "orchestrator.sagas.services.saga_prune"}
# The saga admin page links to the saga's trace: this URL with {saga_id} filled in (every
# span of a saga carries cafe.saga.id). Empty: no link. For Jaeger, its search by that tag:
# http://127.0.0.1:16686/search?service=orchestrator&tags=%7B%22cafe.saga.id%22%3A%22{saga_id}%22%7D
TRACE_UI_URL = env.str("TRACE_UI_URL", default="")
