"""The message contract and its transport (Celery on Redis, one queue per service)."""
