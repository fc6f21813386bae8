"""An in-memory Kafka for fast unit tests of the engine, the sensors and the assets.

It implements the subset of ``confluent_kafka.Consumer`` the engine uses (:class:`ConsumerLike`),
with the same semantics that matter here: per-partition offsets, ``assign()`` positions including
``OFFSET_BEGINNING``, batched ``consume()``, committed group offsets, and watermarks. It can also
imitate the broker quirk of under-reporting the high watermark (``watermark_lag``).

Integration tests use the real embedded broker; this is only for tests without a network.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

OFFSET_BEGINNING = -2
OFFSET_END = -1


@dataclass
class FakeMessage:
    """A consumed record, shaped like ``confluent_kafka.Message``."""

    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _timestamp_ms: int

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)


@dataclass
class _PartitionMeta:
    id: int


@dataclass
class _TopicMeta:
    topic: str
    partitions: dict[int, _PartitionMeta]
    error: Any = None


@dataclass
class _ClusterMeta:
    topics: dict[str, _TopicMeta]


@dataclass
class FakeKafka:
    """Topics as lists of records per partition, shared by every consumer made from it.

    Args:
        watermark_lag: how many records at the end of each partition ``get_watermark_offsets``
            hides, to imitate brokers that report the base offset of the last record batch.
    """

    watermark_lag: int = 0
    topics: dict[str, list[list[FakeMessage]]] = field(default_factory=dict)
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create_topic(self, topic: str, partitions: int = 3) -> None:
        with self._lock:
            self.topics.setdefault(topic, [[] for _ in range(partitions)])

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> tuple[int, int]:
        """Append a record; the partition defaults to a stable hash of the key. Returns coords."""
        with self._lock:
            parts = self.topics[topic]
            if partition is None:
                partition = (sum(key) if key else 0) % len(parts)
            log = parts[partition]
            ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
            log.append(FakeMessage(topic, partition, len(log), key, value, ts))
            return partition, len(log) - 1

    def end_offsets(self, topic: str) -> dict[int, int]:
        return {p: len(log) for p, log in enumerate(self.topics[topic])}

    def consumer(self, config: dict[str, Any] | None = None) -> FakeConsumer:
        return FakeConsumer(self, (config or {}).get("group.id", "fake-group"))

    def consumer_factory(self, config: dict[str, Any]) -> FakeConsumer:
        """Matches :data:`tidelake.ingest.ConsumerFactory`."""
        return self.consumer(config)


class FakeConsumer:
    """A consumer over :class:`FakeKafka` (see the module docstring for what it imitates)."""

    def __init__(self, kafka: FakeKafka, group: str) -> None:
        self.kafka = kafka
        self.group = group
        self.positions: dict[tuple[str, int], int] = {}
        self.closed = False
        self.commits: list[list[tuple[str, int, int]]] = []

    def assign(self, partitions: list[Any]) -> None:
        self.positions = {}
        for tp in partitions:
            offset = tp.offset
            if offset in (OFFSET_BEGINNING, -1001):
                offset = 0
            elif offset == OFFSET_END:
                offset = len(self.kafka.topics[tp.topic][tp.partition])
            self.positions[(tp.topic, tp.partition)] = offset

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        out: list[FakeMessage] = []
        for (topic, partition), pos in self.positions.items():
            log = self.kafka.topics[topic][partition]
            take = log[pos : pos + (num_messages - len(out))]
            out.extend(take)
            self.positions[(topic, partition)] = pos + len(take)
            if len(out) >= num_messages:
                break
        if not out and timeout and timeout > 0:
            time.sleep(min(timeout, 0.01))
        return out

    def commit(self, *args: Any, offsets: list[Any] | None = None, **kwargs: Any) -> None:
        done = [(tp.topic, tp.partition, tp.offset) for tp in offsets or []]
        self.commits.append(done)
        for topic, partition, offset in done:
            self.kafka.committed[(self.group, topic, partition)] = offset

    def committed(self, partitions: list[Any], timeout: float = -1) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [
            TopicPartition(
                tp.topic,
                tp.partition,
                self.kafka.committed.get((self.group, tp.topic, tp.partition), -1001),
            )
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, partition: Any, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        n = len(self.kafka.topics[partition.topic][partition.partition])
        return 0, max(0, n - self.kafka.watermark_lag) if n else 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> _ClusterMeta:
        names = [topic] if topic else list(self.kafka.topics)
        topics = {}
        for name in names:
            parts = self.kafka.topics.get(name)
            if parts is None:
                topics[name] = _TopicMeta(name, {}, error="UNKNOWN_TOPIC_OR_PART")
            else:
                topics[name] = _TopicMeta(name, {i: _PartitionMeta(i) for i in range(len(parts))})
        return _ClusterMeta(topics)

    def close(self) -> None:
        self.closed = True
