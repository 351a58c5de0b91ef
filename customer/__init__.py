"""The customer service: a Django project of its own, with its own database and queue."""

from customer.celery import app as celery_app

__all__ = ["celery_app"]
