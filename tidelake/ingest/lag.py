"""Pending data per topic and partition, as the sensors see it."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from tidelake.ingest.consumer import OFFSET_BEGINNING, ConsumerLike

log = logging.getLogger(__name__)


@dataclass
class PartitionLag:
    """Where one partition stands: bronze's resume position against the broker."""

    partition: int
    position: int | None
    """Next offset bronze will read (None: never ingested, starts at the earliest record)."""
    high_watermark: int
    """As reported by the broker; may under-report the true end (see :func:`probe_lag`)."""
    pending_probe: bool
    """A record exists at the position (read by a probe consumer), whatever the watermark says."""
    oldest_pending_ms: int | None
    """Kafka timestamp of the first pending record, if the probe saw one."""

    @property
    def lag(self) -> int:
        """Records known pending: watermark minus position, at least 1 if the probe saw one."""
        by_watermark = max(0, self.high_watermark - (self.position or 0))
        return max(by_watermark, 1 if self.pending_probe else 0)


@dataclass
class TopicLag:
    """Pending data of one topic: what a sensor needs to decide whether a run is due."""

    topic: str
    physical_topic: str
    partitions: list[PartitionLag]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def pending(self) -> bool:
        return self.total_lag > 0

    @property
    def oldest_pending_age_seconds(self) -> float | None:
        stamps = [p.oldest_pending_ms for p in self.partitions if p.oldest_pending_ms]
        return (time.time() * 1000 - min(stamps)) / 1000 if stamps else None

    def cursor_token(self) -> str:
        """``p:position-watermark`` per partition: names what a run would pick up."""
        return ",".join(
            f"{p.partition}:{p.position if p.position is not None else 'start'}-{p.high_watermark}"
            for p in self.partitions
        )


def probe_lag(
    consumer: ConsumerLike,
    logical_topic: str,
    topic: str,
    positions: Mapping[int, int | None],
    probe_timeout: float = 1.0,
) -> TopicLag:
    """Compare bronze's positions with the broker, without trusting the watermark alone.

    Some brokers report the base offset of the last record batch as the high watermark, so a
    partition whose watermark equals the position may still hold records. The probe consumer
    therefore also tries to read one record at each position (up to ``probe_timeout``).
    """
    from confluent_kafka import TopicPartition

    marks = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in positions
    }
    consumer.assign(
        [
            TopicPartition(topic, p, pos if pos is not None else OFFSET_BEGINNING)
            for p, pos in positions.items()
        ]
    )
    first: dict[int, int] = {}
    deadline = time.monotonic() + probe_timeout
    while len(first) < len(positions) and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=500, timeout=0.1):
            if m.error() is None and m.partition() not in first:
                first[m.partition()] = m.timestamp()[1]
    return TopicLag(
        topic=logical_topic,
        physical_topic=topic,
        partitions=[
            PartitionLag(
                partition=p,
                position=positions[p],
                high_watermark=marks[p],
                pending_probe=p in first,
                oldest_pending_ms=first.get(p),
            )
            for p in positions
        ],
    )
