"""Pending data per topic and partition, as the sensors see it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class PartitionLag:
    """Where one partition stands: bronze's resume position against the broker."""

    partition: int
    position: int | None
    """Next offset bronze will read (None: never ingested, starts at the earliest record)."""
    high_watermark: int
    """As reported by the broker; may under-report the true end (see :meth:`IngestEngine.lag`)."""
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
