from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "orchestrator.sagas"
    label = "sagas"

    def ready(self) -> None:
        from common.metrics import register_collector
        from orchestrator.sagas.metrics import SagaCollector

        register_collector(SagaCollector())
