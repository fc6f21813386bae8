"""The exactly-once ingestion engine: Kafka topic → ``quarantine`` + ``bronze/<table>``.

Modules follow the protocol (docs/ARCHITECTURE.md, "Exactly-once ingestion"): :mod:`consumer`
(the Kafka interface and raw record collection), :mod:`decode` (bulk validation), :mod:`commit`
(the two Delta commits carrying the txn offsets), :mod:`report` (what a batch did), :mod:`lag`
(what sensors see), :mod:`engine` (one micro-batch end to end).
"""

from __future__ import annotations

from tidelake.ingest.consumer import ConsumerFactory, ConsumerLike, kafka_consumer_factory
from tidelake.ingest.engine import IngestEngine
from tidelake.ingest.errors import IngestError
from tidelake.ingest.lag import PartitionLag, TopicLag
from tidelake.ingest.positions import app_id, hour_partition_key
from tidelake.ingest.report import BatchReport
from tidelake.ingest.tables import ensure_table

__all__ = [
    "BatchReport",
    "ConsumerFactory",
    "ConsumerLike",
    "IngestEngine",
    "IngestError",
    "PartitionLag",
    "TopicLag",
    "app_id",
    "ensure_table",
    "hour_partition_key",
    "kafka_consumer_factory",
]
