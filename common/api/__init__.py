"""HTTP API plumbing shared by every service: problem+json errors, pagination, health."""
