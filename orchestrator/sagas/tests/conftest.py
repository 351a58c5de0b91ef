"""The real-process fixtures of common's integration tests, for the orchestrator's own."""

from common.tests.integration.conftest import processes, queue

__all__ = ["processes", "queue"]
