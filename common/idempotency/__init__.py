"""``Idempotency-Key`` for POST endpoints: the first response is stored and replayed."""
