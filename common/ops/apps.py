from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Management commands every service has: database bootstrap, local admin user, housekeeping."""

    name = "common.ops"
    label = "ops"
