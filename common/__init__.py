"""Shared library of the four services: settings base, outbox, inbox, messaging, API plumbing."""
