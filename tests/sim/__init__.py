"""A deterministic simulator of the whole message system: ``make simulate`` (see README)."""
