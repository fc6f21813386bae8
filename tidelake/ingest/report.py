"""What one ingestion batch did: the :class:`BatchReport`."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

LATE_THRESHOLD_SECONDS = 30.0
"""A record counts as late when it reached Kafka more than this after its ``event_time``."""


@dataclass
class BatchReport:
    """What one ingestion batch of one topic did. Every figure is about this batch only."""

    topic: str
    physical_topic: str
    records: int = 0
    bytes: int = 0
    valid: int = 0
    invalid: int = 0
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_already_committed: int = 0
    late_count: int = 0
    max_lateness_seconds: float | None = None
    duplicate_event_ids: int = 0
    partitions_touched: list[str] = field(default_factory=list)
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Kafka partition → (first offset read, next offset to read) for partitions with records."""
    positions: dict[int, int | None] = field(default_factory=dict)
    """Kafka partition → resume position found in bronze at the start (None: never ingested)."""
    bronze_version: int | None = None
    quarantine_version: int | None = None
    commits: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    group_commit_error: str | None = None

    def add_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["offsets"] = {str(p): list(r) for p, r in self.offsets.items()}
        d["positions"] = {str(p): v for p, v in self.positions.items()}
        return d

    def summary(self) -> str:
        """One readable line for logs and the CLI."""
        secs = sum(self.stage_seconds.values())
        rate = self.records / secs if secs > 0 else 0.0
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.invalid_by_reason.items()))
        lateness = (
            f"{self.max_lateness_seconds:.1f}s" if self.max_lateness_seconds is not None else "-"
        )
        return (
            f"{self.topic}: {self.records} records ({self.bytes / 1e6:.1f} MB), "
            f"{self.valid} valid, {self.invalid} quarantined"
            + (f" [{reasons}]" if reasons else "")
            + f", {self.late_count} late (max lateness {lateness}), "
            f"{self.duplicate_event_ids} duplicate ids, "
            f"{len(self.partitions_touched)} hour partitions, {self.commits} commits, "
            f"bronze v{self.bronze_version}, {rate:,.0f} rec/s"
        )
