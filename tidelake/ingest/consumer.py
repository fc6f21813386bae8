"""The Kafka side of the engine: the client interfaces, the consumer configuration (with its
memory caps), raw-record collection, and what consumer errors mean.

Memory bound of one batch (``TIDELAKE_MAX_BATCH_BYTES`` = B, bytes of message values and keys):
librdkafka's prefetch queue is capped at B/16 (with fetch responses of at most B/16 in flight),
so one ``consume()`` call returns at most B/16. A piece is cut at B/16, so it holds at most B/8;
a commit closes once B/8 has been read since the last one, so a chunk holds at most B/4; and while
its commit runs, the reader may read at most two more pieces (``PIECES_IN_FLIGHT``), B/4. The
engine therefore holds at most about B/2 of raw record bytes, which is what
:attr:`BatchReport.peak_held_bytes` measures and the tests check. Decoding copies them at most once
more (typed bronze columns are smaller than their JSON; a quarantined record is kept as it came),
so a batch's data stays below about B plus the prefetch, on top of the process's fixed cost
(interpreter, DuckDB, libraries). Fetches never go below 1 MiB (librdkafka's own floor), which
dominates for budgets under 16 MiB. A single message larger than B/8 is still read (Kafka always
returns at least one record batch); it just gets a commit of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from tidelake.ingest.decode import RawChunk
from tidelake.ingest.errors import IngestError

log = logging.getLogger(__name__)

OFFSET_BEGINNING = -2
"""librdkafka's logical offset for 'the earliest available record'."""
OFFSET_INVALID = -1001
"""librdkafka's 'no position yet'."""
CONSUME_BATCH = 10_000
"""Messages asked for per ``consume()`` call."""
MIN_FETCH_BYTES = 1_048_576
"""Smallest ``fetch.max.bytes``: librdkafka requires it to be at least ``message.max.bytes``."""
ISOLATION_LEVEL = "read_committed"
"""Records of aborted transactions are never delivered and open transactions hold the end back
(the last stable offset), so bronze never holds a record its producer rolled back. Transaction
markers and aborted records still take offsets: the engine accounts them as skipped."""


class MessageLike(Protocol):
    def error(self) -> Any: ...
    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class ConsumerLike(Protocol):
    """The subset of ``confluent_kafka.Consumer`` the engine uses (a fake implements it too)."""

    def assign(self, partitions: list[Any]) -> None: ...
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]: ...
    def position(self, partitions: list[Any]) -> list[Any]: ...
    def commit(self, *args: Any, **kwargs: Any) -> Any: ...
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...
    def get_watermark_offsets(
        self, partition: Any, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...
    def close(self) -> None: ...


class AdminLike(Protocol):
    """The part of ``confluent_kafka.admin.AdminClient`` the engine uses: topic ids."""

    def describe_topics(self, topics: Any, **kwargs: Any) -> dict[str, Any]: ...


ConsumerFactory = Callable[[dict[str, Any]], ConsumerLike]
AdminFactory = Callable[[dict[str, Any]], AdminLike]


def kafka_consumer_factory(config: dict[str, Any]) -> ConsumerLike:
    """Build a real ``confluent_kafka.Consumer``."""
    from confluent_kafka import Consumer

    consumer: ConsumerLike = Consumer(config)
    return consumer


def kafka_admin_factory(config: dict[str, Any]) -> AdminLike:
    """Build a real ``confluent_kafka.admin.AdminClient`` (consumer-only keys removed)."""
    from confluent_kafka.admin import AdminClient

    admin: AdminLike = AdminClient({k: v for k, v in config.items() if k not in _CONSUMER_ONLY})
    return admin


_CONSUMER_ONLY = {
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "isolation.level",
}


def memory_caps(max_batch_bytes: int) -> dict[str, int]:
    """The byte caps derived from ``TIDELAKE_MAX_BATCH_BYTES`` (see the module docstring)."""
    # librdkafka refuses a fetch.max.bytes below message.max.bytes (1,000,000 by default).
    fetch = max(MIN_FETCH_BYTES, min(50 * 1024 * 1024, max_batch_bytes // 16))
    return {
        "commit_bytes": max_batch_bytes // 8,
        "piece_bytes": max_batch_bytes // 16,
        "queue_kbytes": max(256, max_batch_bytes // 16 // 1024),
        "fetch_max_bytes": fetch,
        "partition_fetch_bytes": min(1024 * 1024, fetch),
    }


def consumer_config(base: dict[str, Any], group: str, max_batch_bytes: int) -> dict[str, Any]:
    """librdkafka settings of an ingestion consumer.

    Rules: offsets come from the Delta log, so nothing is auto-committed or auto-stored; a
    position outside the broker's range is an error (``auto.offset.reset=error``), never a
    silent jump to the start or the end; read_committed isolation (:data:`ISOLATION_LEVEL`);
    prefetching is capped in bytes (:func:`memory_caps`).
    """
    caps = memory_caps(max_batch_bytes)
    return base | {
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "isolation.level": ISOLATION_LEVEL,
        "enable.partition.eof": False,
        "queued.min.messages": 200_000,
        "queued.max.messages.kbytes": caps["queue_kbytes"],
        "fetch.max.bytes": caps["fetch_max_bytes"],
        "max.partition.fetch.bytes": caps["partition_fetch_bytes"],
        "fetch.wait.max.ms": 100,
    }


class ChunkBuilder:
    """Accumulates consumed messages column-wise (one pass per attribute, no per-row objects)."""

    def __init__(self) -> None:
        self.partitions: list[int] = []
        self.offsets: list[int] = []
        self.timestamps: list[int] = []
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []
        self.nbytes = 0
        """Bytes of message values and keys held."""

    def __len__(self) -> int:
        return len(self.values)

    def extend(self, msgs: list[MessageLike]) -> None:
        values = [m.value() for m in msgs]
        keys = [m.key() for m in msgs]
        self.nbytes += sum(map(len, filter(None, values))) + sum(map(len, filter(None, keys)))
        self.values.extend(values)
        self.keys.extend(keys)
        self.partitions.extend([m.partition() for m in msgs])  # type: ignore[misc]
        self.offsets.extend([m.offset() for m in msgs])  # type: ignore[misc]
        self.timestamps.extend([m.timestamp()[1] for m in msgs])

    def build(self, topic: str) -> RawChunk:
        return RawChunk(
            topic=topic,
            partitions=np.asarray(self.partitions, dtype=np.int32),
            offsets=np.asarray(self.offsets, dtype=np.int64),
            timestamps_ms=np.asarray(self.timestamps, dtype=np.int64),
            keys=self.keys,
            values=self.values,
        )


def out_of_range_partitions(errors: list[Any], topic: str) -> dict[int, str]:
    """Sort consumer error events: returns partition → message for offset-out-of-range errors,
    raises :class:`IngestError` for fatal ones (missing topic, no authorization, fatal client
    state), and logs the rest, which librdkafka retries by itself (e.g. a broker restarting).
    """
    from confluent_kafka import KafkaError

    out_of_range: dict[int, str] = {}
    for m in errors:
        err = m.error()
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            continue
        if code in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
            partition = m.partition()
            if partition is not None and partition >= 0:
                out_of_range[int(partition)] = str(err)
                continue
        if getattr(err, "fatal", lambda: False)() or code in (
            KafkaError.UNKNOWN_TOPIC_OR_PART,
            KafkaError._UNKNOWN_TOPIC,
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
        ):
            raise IngestError(f"consuming {topic}: {err}")
        log.warning("consumer error on %s (librdkafka retries): %s", topic, err)
    return out_of_range
