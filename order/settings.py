"""Settings of the order service: the common base plus its own apps."""

from common.settings import service_settings

globals().update(
    service_settings("order", apps=["order.orders"], handlers="order.orders.handlers.HANDLERS")
)
