"""Errors of the ingestion engine."""

from __future__ import annotations


class IngestError(RuntimeError):
    """Ingestion cannot proceed (missing topic, broker error); the message says why."""
