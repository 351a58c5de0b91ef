"""One settings base for every service; each service module calls :func:`service_settings`."""

from common.settings.base import service_settings

__all__ = ["service_settings"]
