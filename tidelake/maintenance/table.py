"""Maintenance of one Delta table: compact closed partitions, checkpoint the log, vacuum.

Rules (see :mod:`tidelake.maintenance.plan` for which partitions, and
:mod:`tidelake.maintenance.lease` for why compactors exclude each other):

* **Compaction** rewrites one closed partition per commit (``dataChange=false``). It never
  touches txn actions, so the exactly-once positions (bronze's Kafka offsets) and the derived
  tables' watermarks are exactly what they were. Appends racing it are rebased by delta-rs; a
  commit that still fails (``CommitFailedError``: an overwrite or delete of the partition won,
  or too many commits landed meanwhile) is re-read and retried with backoff, then the partition
  is skipped and reported, never failing the pass.
* Every commit it makes carries a ``tidelake`` annotation of kind ``maintenance`` that names no
  hours (``hours: []``), so readers of "commits since version v" skip it: it adds no rows.
* **Checkpoint** when at least ``checkpoint_every`` commits landed since the last checkpoint
  (delta-rs itself writes one only every ``delta.checkpointInterval`` = 100 commits).
* **Vacuum** deletes data files removed more than ``retention_hours`` ago, never less than
  7 days (:data:`MIN_RETENTION_HOURS`): a shorter retention deletes files that a reader still
  working from an older snapshot needs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.fs import DeltaStorageHandler

from tidelake.ingest.annotations import CommitAnnotation
from tidelake.lake import Lake
from tidelake.maintenance.lease import Lease, LeaseHeld
from tidelake.maintenance.plan import (
    DEFAULT_TARGET_SIZE,
    Partition,
    closed_candidates,
    table_partitions,
)
from tidelake.maintenance.report import MaintenanceReport, PartitionSkip

log = logging.getLogger(__name__)

MIN_RETENTION_HOURS = 168
"""Vacuum never deletes files removed less than 7 days ago (FACTS: shorter has corrupted
tables for readers of older snapshots)."""
COMPACT_ATTEMPTS = 4
"""Tries per partition before it is skipped for this pass."""
BACKOFF_SECONDS = 0.2
"""First wait after a conflict; doubles per attempt."""
CHECKPOINT_EVERY = 10
"""Commits since the last checkpoint that make one due."""
MAX_PARTITIONS = 48
"""Partitions compacted per table per pass: a long backlog is worked off over several passes
instead of flooding the log (readers look back over a bounded number of commits)."""

SnapshotHook = Callable[[Partition, DeltaTable], None]
"""Called with a partition and the snapshot its compaction was planned from, just before the
compaction commits: the seam where tests let a concurrent writer land."""


class MaintenanceError(ValueError):
    """A maintenance request that would be unsafe (e.g. a vacuum retention below 7 days)."""


def maintenance_metadata(operation: str, **stats: Any) -> dict[str, str]:
    """The ``commitInfo`` custom metadata of a maintenance commit.

    A :class:`~tidelake.ingest.annotations.CommitAnnotation` of kind ``maintenance`` with no
    topic and no Kafka ranges; ``hours`` is empty at the top level and in ``stats`` so that both
    annotation readers (ingest's and the derived layers') see a commit that changed no hour.
    """
    note = CommitAnnotation(kind="maintenance", topic="", stats={"operation": operation, **stats})
    note.stats["hours"] = []
    payload = json.loads(note.to_json()) | {"hours": []}
    return {"tidelake": json.dumps(payload, separators=(",", ":"), sort_keys=True)}


def maintain_table(
    lake: Lake,
    path: str,
    *,
    now: datetime,
    horizon_hours: int,
    retention_hours: int = MIN_RETENTION_HOURS,
    dry_run: bool = False,
    checkpoint_every: int = CHECKPOINT_EVERY,
    max_partitions: int = MAX_PARTITIONS,
    target_size: int = DEFAULT_TARGET_SIZE,
    on_snapshot: SnapshotHook | None = None,
) -> MaintenanceReport:
    """Compact the closed partitions of ``path``, checkpoint its log and vacuum it.

    Args:
        now: the time partitions are judged closed against (UTC, timezone-aware).
        horizon_hours: a partition is closed when its window ended this long before ``now``.
        retention_hours: vacuum retention; below :data:`MIN_RETENTION_HOURS` is refused.
        dry_run: plan and list only; no commit, no checkpoint, no deleted file.
        checkpoint_every: commits since the last checkpoint that make a new one due.
        max_partitions: partitions compacted this pass (the rest are ``partitions_pending``).
        on_snapshot: test seam, see :data:`SnapshotHook`.

    Raises:
        MaintenanceError: ``retention_hours`` is below 7 days.
    """
    if retention_hours < MIN_RETENTION_HOURS:
        raise MaintenanceError(
            f"vacuum retention of {retention_hours} h refused: it must be at least "
            f"{MIN_RETENTION_HOURS} h (7 days), or readers of older snapshots lose files"
        )
    t0 = time.perf_counter()
    report = MaintenanceReport(path=path, dry_run=dry_run)
    table = lake.open(path)
    if table is None:
        report.error = "table does not exist"
        return report
    report.version_before = table.version()
    candidates = closed_candidates(table_partitions(table, target_size), now, horizon_hours)
    todo = candidates[:max_partitions]
    report.partitions_pending = len(candidates) - len(todo)
    if dry_run:
        report.partitions_compacted = [p.label for p in todo]
        report.files_before = sum(p.files for p in todo)
        report.bytes_before = sum(p.size_bytes for p in todo)
    elif todo:
        _compact_all(lake, path, todo, report, target_size, on_snapshot)
    table = lake.open(path) or table
    if not dry_run and _checkpoint_due(table, lake.storage_options, checkpoint_every):
        table.create_checkpoint()
        report.checkpoint_version = table.version()
    report.vacuumed_files = len(
        table.vacuum(
            retention_hours=retention_hours,
            dry_run=dry_run,
            enforce_retention_duration=True,
            commit_properties=CommitProperties(custom_metadata=maintenance_metadata("vacuum")),
        )
    )
    report.version_after = (lake.open(path) or table).version()
    report.duration_seconds = time.perf_counter() - t0
    log.info("%s", report.summary())
    return report


def _compact_all(
    lake: Lake,
    path: str,
    todo: list[Partition],
    report: MaintenanceReport,
    target_size: int,
    on_snapshot: SnapshotHook | None,
) -> None:
    def fresh() -> DeltaTable:
        table = lake.open(path)
        if table is None:
            raise LeaseHeld(f"{path} disappeared during maintenance")
        return table

    lease = Lease(fresh, maintenance_metadata("lease"))
    try:
        lease.acquire()
    except LeaseHeld as exc:
        report.lease = str(exc)
        report.partitions_pending += len(todo)
        return
    try:
        for i, partition in enumerate(todo):
            try:
                lease.renew_if_due()
            except LeaseHeld as exc:
                report.lease = str(exc)
                report.partitions_pending += len(todo) - i
                return
            _compact_partition(fresh, partition, report, target_size, on_snapshot)
    finally:
        try:
            lease.release()
        except Exception as exc:  # an unreleased lease expires by itself
            log.warning("%s: could not release the maintenance lease: %s", path, exc)


def _compact_partition(
    fresh: Callable[[], DeltaTable],
    planned: Partition,
    report: MaintenanceReport,
    target_size: int,
    on_snapshot: SnapshotHook | None,
) -> None:
    """Compact one partition in one commit, re-reading and retrying after a conflict."""
    for attempt in range(COMPACT_ATTEMPTS):
        table = fresh()
        current = next(
            (p for p in table_partitions(table, target_size) if p.values == planned.values), None
        )
        if current is None or current.small_files < 2:
            return  # rewritten meanwhile (an overwrite of the hour): nothing left to do
        read_version = table.version()
        if on_snapshot is not None:
            on_snapshot(current, table)
        try:
            metrics = table.optimize.compact(
                partition_filters=current.filters,
                target_size=target_size,
                commit_properties=CommitProperties(
                    custom_metadata=maintenance_metadata("compact", partition=current.label)
                ),
            )
        except CommitFailedError as exc:
            report.conflicts_retried += 1
            log.info("compacting %s conflicted (%s); re-reading", current.label, exc)
            time.sleep(BACKOFF_SECONDS * 2**attempt)
            continue
        removed, added = int(metrics["numFilesRemoved"]), int(metrics["numFilesAdded"])
        if removed == 0:
            return
        report.interleaved_commits += max(0, table.version() - read_version - 1)
        report.partitions_compacted.append(current.label)
        report.files_before += current.files
        report.files_after += current.files - removed + added
        report.bytes_before += current.size_bytes
        report.bytes_after += (
            current.size_bytes
            - _total_size(metrics.get("filesRemoved"))
            + _total_size(metrics.get("filesAdded"))
        )
        return
    report.partitions_skipped.append(
        PartitionSkip(planned.label, f"{COMPACT_ATTEMPTS} conflicting commits in a row")
    )


def _total_size(stats: Any) -> int:
    """``totalSize`` of delta-rs's optimize file statistics (a JSON string or a dict)."""
    if isinstance(stats, str):
        stats = json.loads(stats)
    return int(stats.get("totalSize", 0)) if isinstance(stats, Mapping) else 0


def last_checkpoint_version(table: DeltaTable, storage_options: Mapping[str, str]) -> int | None:
    """The version of the table's newest checkpoint (``_delta_log/_last_checkpoint``), if any."""
    handler = DeltaStorageHandler(table.table_uri, dict(storage_options))
    try:
        raw = handler.open_input_file("_delta_log/_last_checkpoint").read()
    except (FileNotFoundError, OSError):
        return None
    try:
        return int(json.loads(raw)["version"])
    except (ValueError, KeyError, TypeError):
        return None


def _checkpoint_due(table: DeltaTable, storage_options: Mapping[str, str], every: int) -> bool:
    last = last_checkpoint_version(table, storage_options)
    return table.version() - (-1 if last is None else last) >= every
