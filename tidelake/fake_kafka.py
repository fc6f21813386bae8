"""An in-memory Kafka for fast unit tests of the engine, the sensors and the assets.

It implements the subset of ``confluent_kafka.Consumer`` the engine uses (:class:`ConsumerLike`),
with the same semantics that matter here: per-partition offsets, ``assign()`` positions including
``OFFSET_BEGINNING``, batched ``consume()``, ``position()``, committed group offsets, and
watermarks. It also imitates what real logs do to offsets: the broker quirk of under-reporting
the high watermark (``watermark_lag``), offsets that hold no data record (transaction markers,
aborted or compacted records: :meth:`FakeKafka.produce_marker`), retention deleting the start of a
log (:meth:`FakeKafka.expire`), and a topic deleted and re-created under the same name with a new
topic id (:meth:`FakeKafka.recreate_topic`); an admin client (:meth:`FakeKafka.admin_factory`)
answers ``describe_topics`` with the topic id.

Integration tests use the real embedded broker; this is only for tests without a network.
"""

from __future__ import annotations

import threading
import time
import uuid
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
    marker: bool = False
    """An offset without a data record (control marker, aborted or compacted record)."""

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
    low: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) → first offset still retained (records below it expired)."""
    topic_ids: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create_topic(self, topic: str, partitions: int = 3) -> None:
        with self._lock:
            if topic not in self.topics:
                self.topics[topic] = [[] for _ in range(partitions)]
                self.topic_ids[topic] = uuid.uuid4().hex

    def recreate_topic(self, topic: str, partitions: int | None = None) -> None:
        """Delete ``topic`` and create it again: empty logs from offset 0, a new topic id."""
        with self._lock:
            n = partitions or len(self.topics[topic])
            self.topics[topic] = [[] for _ in range(n)]
            self.topic_ids[topic] = uuid.uuid4().hex
            for key in [k for k in self.low if k[0] == topic]:
                del self.low[key]

    def expire(self, topic: str, partition: int, before: int) -> None:
        """Retention: records of ``partition`` below offset ``before`` are gone."""
        with self._lock:
            self.low[(topic, partition)] = before

    def produce_marker(self, topic: str, partition: int, count: int = 1) -> None:
        """Take ``count`` offsets that consumers never see (e.g. a transaction's commit marker)."""
        with self._lock:
            log = self.topics[topic][partition]
            for _ in range(count):
                log.append(FakeMessage(topic, partition, len(log), None, None, 0, marker=True))

    def start_offset(self, topic: str, partition: int) -> int:
        return self.low.get((topic, partition), 0)

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
        config = config or {}
        kbytes = config.get("queued.max.messages.kbytes")
        return FakeConsumer(
            self,
            config.get("group.id", "fake-group"),
            max_queued_bytes=int(kbytes) * 1024 if kbytes else None,
        )

    def consumer_factory(self, config: dict[str, Any]) -> FakeConsumer:
        """Matches :data:`tidelake.ingest.ConsumerFactory`."""
        return self.consumer(config)

    def admin_factory(self, config: dict[str, Any]) -> FakeAdmin:
        """Matches :data:`tidelake.ingest.AdminFactory`."""
        return FakeAdmin(self)


@dataclass
class _Done:
    value: Any

    def result(self, timeout: float | None = None) -> Any:
        return self.value


@dataclass
class _TopicDescription:
    name: str
    topic_id: str | None


class FakeAdmin:
    """The ``describe_topics`` part of ``confluent_kafka.admin.AdminClient``."""

    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka

    def describe_topics(self, topics: Any, **kwargs: Any) -> dict[str, _Done]:
        names = list(getattr(topics, "topic_names", topics))
        return {n: _Done(_TopicDescription(n, self.kafka.topic_ids.get(n))) for n in names}


@dataclass
class _FakeKafkaError:
    """Shaped like ``confluent_kafka.KafkaError`` for the offset-out-of-range case."""

    _code: int
    text: str

    def code(self) -> int:
        return self._code

    def fatal(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.text


@dataclass
class FakeError:
    """A consumer error event: the fetch position of a partition is outside the retained log."""

    _topic: str
    _partition: int
    _offset: int

    def error(self) -> _FakeKafkaError:
        from confluent_kafka import KafkaError

        return _FakeKafkaError(
            KafkaError._AUTO_OFFSET_RESET,
            f"fetch failed due to requested offset not available on the broker: "
            f"Broker: Offset out of range (offset {self._offset})",
        )

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> None:
        return None

    def key(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (0, -1)


class FakeConsumer:
    """A consumer over :class:`FakeKafka` (see the module docstring for what it imitates)."""

    def __init__(self, kafka: FakeKafka, group: str, max_queued_bytes: int | None = None) -> None:
        self.kafka = kafka
        self.group = group
        self.max_queued_bytes = max_queued_bytes
        """Like librdkafka's prefetch queue cap: one ``consume()`` returns at most this many
        bytes of values (and at least one message)."""
        self.positions: dict[tuple[str, int], int] = {}
        self.closed = False
        self.commits: list[list[tuple[str, int, int]]] = []

    def assign(self, partitions: list[Any]) -> None:
        self.positions = {}
        for tp in partitions:
            offset = tp.offset
            if offset in (OFFSET_BEGINNING, -1001):
                offset = self.kafka.start_offset(tp.topic, tp.partition)
            elif offset == OFFSET_END:
                offset = len(self.kafka.topics[tp.topic][tp.partition])
            self.positions[(tp.topic, tp.partition)] = offset

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        """Records from the assigned positions; markers advance the position but are not
        delivered; a position outside the retained log yields an out-of-range error message
        (as librdkafka does with ``auto.offset.reset=error``) and stops that partition."""
        out: list[Any] = []
        budget = self.max_queued_bytes
        for (topic, partition), pos in list(self.positions.items()):
            if pos < 0:
                continue
            log = self.kafka.topics[topic][partition]
            if pos < self.kafka.start_offset(topic, partition) or pos > len(log):
                out.append(FakeError(topic, partition, pos))
                self.positions[(topic, partition)] = -1
                continue
            while pos < len(log) and len(out) < num_messages:
                msg = log[pos]
                if budget is not None and out and budget < len(msg._value or b""):
                    break
                pos += 1
                if not msg.marker:
                    out.append(msg)
                    if budget is not None:
                        budget -= len(msg._value or b"")
            self.positions[(topic, partition)] = pos
            if len(out) >= num_messages or (budget is not None and budget <= 0):
                break
        if not out and timeout and timeout > 0:
            time.sleep(min(timeout, 0.01))
        return out

    def position(self, partitions: list[Any]) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [
            TopicPartition(
                tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), -1001)
            )
            for tp in partitions
        ]

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
        low = self.kafka.start_offset(partition.topic, partition.partition)
        return low, max(low, n - self.kafka.watermark_lag) if n else low

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
