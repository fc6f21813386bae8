"""Micro-batch caps of the ingest engine, and the one place an :class:`IngestEngine` is built."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from resources.kafka import KafkaClient
from resources.lake import LakeResource
from tidelake.ingest import IngestEngine
from tidelake.settings import IngestSettings

_D = IngestSettings()


class IngestResource(dg.ConfigurableResource):
    """Caps of one ingestion batch; see :class:`tidelake.settings.IngestSettings`."""

    max_batch_records: int = Field(
        default=_D.max_batch_records, description="TIDELAKE_MAX_BATCH_RECORDS"
    )
    max_batch_seconds: float = Field(
        default=_D.max_batch_seconds, description="TIDELAKE_MAX_BATCH_SECONDS"
    )
    quiet_seconds: float = Field(default=_D.quiet_seconds, description="TIDELAKE_QUIET_SECONDS")
    max_message_bytes: int = Field(
        default=_D.max_message_bytes, description="TIDELAKE_MAX_MESSAGE_BYTES"
    )
    commit_rows: int = Field(default=_D.commit_rows, description="TIDELAKE_COMMIT_ROWS")
    max_future_seconds: float = Field(
        default=_D.max_future_seconds, description="TIDELAKE_MAX_FUTURE_SECONDS"
    )
    max_batch_bytes: int = Field(default=_D.max_batch_bytes, description="TIDELAKE_MAX_BATCH_BYTES")
    write_attempts: int = Field(default=_D.write_attempts, description="TIDELAKE_WRITE_ATTEMPTS")

    def settings(self) -> IngestSettings:
        """The engine's :class:`IngestSettings`, validated like ``IngestSettings.from_env``.

        The test-only kill hook (``TIDELAKE_FAULT_POINT``) is deliberately not a field: no
        Dagster run can enable it.
        """
        return IngestSettings.from_env(
            {
                "TIDELAKE_MAX_BATCH_RECORDS": str(self.max_batch_records),
                "TIDELAKE_MAX_BATCH_SECONDS": str(self.max_batch_seconds),
                "TIDELAKE_QUIET_SECONDS": str(self.quiet_seconds),
                "TIDELAKE_MAX_MESSAGE_BYTES": str(self.max_message_bytes),
                "TIDELAKE_COMMIT_ROWS": str(self.commit_rows),
                "TIDELAKE_MAX_FUTURE_SECONDS": str(self.max_future_seconds),
                "TIDELAKE_MAX_BATCH_BYTES": str(self.max_batch_bytes),
                "TIDELAKE_WRITE_ATTEMPTS": str(self.write_attempts),
            }
        )


def build_engine(kafka: KafkaClient, lake: LakeResource, ingest: IngestResource) -> IngestEngine:
    """The ingest engine over the configured (or fake) Kafka, lake and caps."""
    return IngestEngine(
        lake.lake(),
        kafka.settings(),
        ingest.settings(),
        kafka.consumer_factory(),
        kafka.admin_factory(),
    )
