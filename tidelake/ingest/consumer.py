"""The Kafka consumer interface the engine uses, and how raw records are collected."""

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


CONSUME_BATCH = 10_000


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
    def commit(self, *args: Any, **kwargs: Any) -> Any: ...
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...
    def get_watermark_offsets(
        self, partition: Any, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...
    def close(self) -> None: ...


ConsumerFactory = Callable[[dict[str, Any]], ConsumerLike]


def kafka_consumer_factory(config: dict[str, Any]) -> ConsumerLike:
    """Build a real ``confluent_kafka.Consumer``."""
    from confluent_kafka import Consumer

    consumer: ConsumerLike = Consumer(config)
    return consumer


class ChunkBuilder:
    """Accumulates consumed messages column-wise (one pass per attribute, no per-row objects)."""

    def __init__(self) -> None:
        self.partitions: list[int] = []
        self.offsets: list[int] = []
        self.timestamps: list[int] = []
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []

    def __len__(self) -> int:
        return len(self.values)

    def extend(self, msgs: list[MessageLike]) -> None:
        self.values.extend([m.value() for m in msgs])
        self.keys.extend([m.key() for m in msgs])
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


def raise_fatal(errors: list[Any], topic: str) -> None:
    from confluent_kafka import KafkaError

    for m in errors:
        err = m.error()
        if err.code() == KafkaError._PARTITION_EOF:
            continue
        if getattr(err, "fatal", lambda: False)() or err.code() in (
            KafkaError.UNKNOWN_TOPIC_OR_PART,
            KafkaError._UNKNOWN_TOPIC,
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
        ):
            raise IngestError(f"consuming {topic}: {err}")
        log.warning("consumer error on %s (retrying): %s", topic, err)
