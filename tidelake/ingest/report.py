"""What one ingestion batch did: the :class:`BatchReport`."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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
    window: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Kafka partition → ``(first, next)``: the offsets this batch accounts for, from the
    position before it (or the start of an operator-accepted gap since the last batch, or the
    first offset read for a partition never ingested) to bronze's stored position after it.
    Every offset in it is in bronze, in quarantine, or in a skipped/accepted range of a commit
    newer than :attr:`since_version`. Only partitions whose position moved are listed."""
    since_version: int | None = None
    """Bronze table version before this batch's commits (and before any accept-gap commit made
    since the previous batch): the annotations of newer commits cover :attr:`window`. ``None``
    when the table was created by this batch."""
    skipped: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    """Inclusive offset ranges the broker never delivered (transaction markers, aborted or
    compacted records); accounted as such, not as loss."""
    skipped_offsets: int = 0
    accepted_gaps: list[dict[str, Any]] = field(default_factory=list)
    """Operator-accepted gaps (``tidelake ingest --accept-gap``) recorded since the last batch."""
    topic_id: str | None = None
    """The broker's id of the topic, when it has one."""
    started_at: float | None = None
    """Wall-clock time (Unix seconds) the batch started consuming."""
    finished_at: float | None = None
    """Wall-clock time (Unix seconds) the batch finished its last commit."""
    commit_conflicts: int = 0
    """Commits retried because another writer committed the same app_id first."""
    write_retries: int = 0
    """Delta writes retried after a transient storage error."""
    peak_held_bytes: int = 0
    """Most message-value bytes the engine held at once (consumed, not yet committed)."""
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
        d["window"] = {str(p): list(r) for p, r in self.window.items()}
        d["skipped"] = {str(p): [list(r) for r in rs] for p, rs in self.skipped.items()}
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
            + (f"{self.skipped_offsets} offsets without records, " if self.skipped_offsets else "")
            + (f"{len(self.accepted_gaps)} accepted gaps, " if self.accepted_gaps else "")
            + f"bronze v{self.bronze_version}, {rate:,.0f} rec/s"
        )


def account(
    report: BatchReport,
    valid: pa.Table,
    invalid: pa.Table,
    event_ids: list[pa.ChunkedArray],
    touched: set[str],
) -> None:
    """Add the rows one commit wrote (by this writer) to the report's figures.

    Lateness is arrival (Kafka timestamp, else ingestion) minus ``event_time``; a row is late
    past :data:`LATE_THRESHOLD_SECONDS`. ``touched`` collects the Dagster hourly partition keys
    of the rows' event hours, ``event_ids`` the ids for the batch's duplicate count.
    """
    from tidelake.ingest.positions import hour_partition_key

    report.valid += valid.num_rows
    report.invalid += invalid.num_rows
    if invalid.num_rows:
        for reason, n in Counter(invalid.column("error").to_pylist()).items():
            report.invalid_by_reason[reason] = report.invalid_by_reason.get(reason, 0) + n
    if not valid.num_rows:
        return
    ingested_us = int(pc.max(pc.cast(valid.column("_ingested_at"), pa.int64())).as_py())
    event_ids.append(valid.column("event_id"))
    et = pc.cast(valid.column("event_time"), pa.int64())
    kt = pc.cast(valid.column("_kafka_timestamp"), pa.int64())
    arrival = pc.fill_null(kt, ingested_us)
    late = pc.greater(pc.subtract(arrival, et), int(LATE_THRESHOLD_SECONDS * 1e6))
    report.late_count += int(pc.sum(late).as_py() or 0)
    lateness = (ingested_us - pc.min(et).as_py()) / 1e6
    if report.max_lateness_seconds is None or lateness > report.max_lateness_seconds:
        report.max_lateness_seconds = lateness
    hours = (
        valid.select(["event_date", "event_hour"])
        .group_by(["event_date", "event_hour"])
        .aggregate([])
    )
    for d, h in zip(
        hours.column("event_date").to_pylist(),
        hours.column("event_hour").to_pylist(),
        strict=True,
    ):
        touched.add(hour_partition_key(d, h))
