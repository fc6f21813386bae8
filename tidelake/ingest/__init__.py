"""The exactly-once ingestion engine: Kafka topic → ``quarantine`` + ``bronze/<table>``.

Modules follow the protocol (docs/ARCHITECTURE.md, "Exactly-once ingestion"): :mod:`positions`
(where each partition stands and whether the broker can serve it), :mod:`consumer` (the Kafka
interface, its memory caps, raw record collection), :mod:`read` (the read loop), :mod:`decode`
and :mod:`decode_sql` (bulk validation), :mod:`commit` (the two Delta commits carrying the txn
offsets), :mod:`annotations` (what every commit records in ``commitInfo``), :mod:`report` (what a
batch did), :mod:`engine` (one micro-batch end to end), :mod:`lag` (what sensors see),
:mod:`gaps` (operator-accepted gaps), :mod:`faults` (test hooks), and :mod:`replay` with
:mod:`replay_judge`, :mod:`replay_coords` and :mod:`replay_result` (moving quarantined records
that now pass into bronze).
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
