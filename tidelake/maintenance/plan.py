"""Which partitions of a table maintenance may compact: closed time partitions with small files.

Rules:

* A table is compacted per partition, by its time partition columns: ``event_date`` +
  ``event_hour`` (bronze, silver, gold: an *hour* partition) or ``ingest_date`` (quarantine: a
  *day* partition). Other partition columns (quarantine's ``_topic``) split the key further.
  A table without such columns is not compacted (there is no notion of "closed" for it).
* A partition is **closed** when its window ended at least ``horizon_hours`` before ``now``:
  late events keep landing in open partitions, so compacting them would only be redone (and
  would race the appenders on the hottest files for nothing). Late data into a closed partition
  is still safe: a compaction rebases over blind appends, and the next pass compacts again.
* A closed partition is worth compacting when it holds at least two *small* files (smaller
  than the compaction target size); big files are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

HOUR_COLUMNS = ("event_date", "event_hour")
DAY_COLUMN = "ingest_date"
DEFAULT_TARGET_SIZE = 64 * 1024 * 1024
"""Compaction target file size in bytes: files at least this big are not rewritten."""

PartitionFilter = list[tuple[str, str, Any]]


@dataclass(frozen=True)
class Partition:
    """One partition of a table: its values, its window end and its files."""

    values: tuple[tuple[str, Any], ...]
    window_end: datetime
    files: int
    small_files: int
    size_bytes: int

    @property
    def label(self) -> str:
        """``event_date=2025-01-01/event_hour=3`` (the partition's directory, as Hive names it)."""
        return "/".join(f"{k}={v}" for k, v in self.values)

    @property
    def filters(self) -> PartitionFilter:
        """The ``partition_filters`` selecting exactly this partition."""
        return [(k, "=", v.isoformat() if isinstance(v, date) else str(v)) for k, v in self.values]


def time_columns(partition_by: Sequence[str]) -> tuple[str, ...] | None:
    """The time partition columns of a table (None: it has none, so it is not compacted)."""
    if all(c in partition_by for c in HOUR_COLUMNS):
        return HOUR_COLUMNS
    if DAY_COLUMN in partition_by:
        return (DAY_COLUMN,)
    return None


def window_end(values: dict[str, Any]) -> datetime | None:
    """When a partition's time window ends (UTC), from its partition values."""
    if "event_hour" in values and "event_date" in values:
        day, hour = values["event_date"], values["event_hour"]
        if not isinstance(day, date) or hour is None:
            return None
        return datetime.combine(day, time(), UTC) + timedelta(hours=int(hour) + 1)
    day = values.get(DAY_COLUMN)
    if not isinstance(day, date):
        return None
    return datetime.combine(day, time(), UTC) + timedelta(days=1)


def table_partitions(table: DeltaTable, target_size: int = DEFAULT_TARGET_SIZE) -> list[Partition]:
    """Every partition of ``table`` with a time window, oldest first (log metadata only)."""
    columns = list(table.metadata().partition_columns)
    if time_columns(columns) is None:
        return []
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    keys = [actions.column(f"partition.{c}").to_pylist() for c in columns]
    sizes = actions.column("size_bytes").to_pylist()
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(tuple(k[i] for k in keys), []).append(int(size))
    out: list[Partition] = []
    for key, file_sizes in groups.items():
        values = dict(zip(columns, key, strict=True))
        end = window_end(values)
        if end is None or any(v is None for v in key):
            continue
        out.append(
            Partition(
                values=tuple(values.items()),
                window_end=end,
                files=len(file_sizes),
                small_files=sum(1 for s in file_sizes if s < target_size),
                size_bytes=sum(file_sizes),
            )
        )
    out.sort(key=lambda p: (p.window_end, p.label))
    return out


def closed_candidates(
    partitions: Sequence[Partition], now: datetime, horizon_hours: int
) -> list[Partition]:
    """Closed partitions (window ended ``horizon_hours`` before ``now``) with ≥ 2 small files."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    cutoff = now - timedelta(hours=horizon_hours)
    return [p for p in partitions if p.window_end <= cutoff and p.small_files >= 2]
