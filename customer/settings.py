"""Settings of the customer service: the common base plus its own apps."""

from common.settings import service_settings

globals().update(
    service_settings(
        "customer",
        apps=["customer.customers", "django_ratelimit"],
        handlers="customer.customers.handlers.HANDLERS",
    )
)
