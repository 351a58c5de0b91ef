from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "orchestrator.sagas"
    label = "sagas"
