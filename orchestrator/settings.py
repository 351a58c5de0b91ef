"""Settings of the orchestrator service: the common base plus its own apps."""

from common.settings import service_settings

globals().update(
    service_settings(
        "orchestrator", apps=["orchestrator.sagas"], handlers="orchestrator.sagas.handlers.HANDLERS"
    )
)
