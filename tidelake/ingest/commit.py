"""The commit protocol: quarantine first, bronze second, each carrying the txn offsets.

Rules (docs/ARCHITECTURE.md, "Exactly-once ingestion"):

* Each commit carries ``Transaction(app_id, next_offset)`` for every partition it advances, and
  a :class:`~tidelake.ingest.annotations.CommitAnnotation` (ranges, skipped offsets, stats).
* Before every write attempt the table's log is re-read and the rows it already holds are
  dropped (:func:`unwritten`), because deltalake accepts a *lower* txn version silently and
  another writer (or an earlier attempt of ours) may have committed since our snapshot.
* A ``CommitFailedError`` (another writer committed the same app_id from our snapshot) is retried
  after the re-read; a transient storage error (:func:`is_transient`), in the write or in the
  re-read, is retried up to ``TIDELAKE_WRITE_ATTEMPTS`` times with exponential backoff. An
  attempt that raised may still have landed (the response was lost after the commit); each
  attempt's annotation carries a unique ``commit_id``, so the next attempt recognises its own
  commit instead of counting those rows as another writer's.
* Anything else raises: the caller stops the batch, and nothing queued behind it commits.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import (
    CommitFailedError,
    DeltaError,
    DeltaProtocolError,
    SchemaMismatchError,
    TableNotFoundError,
)

from tidelake.ingest.annotations import CommitAnnotation, merge_ranges, read_annotations
from tidelake.ingest.decode import DecodedChunk
from tidelake.ingest.faults import FaultHook
from tidelake.ingest.positions import hour_partition_key
from tidelake.ingest.report import LATE_THRESHOLD_SECONDS, BatchReport

log = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 20
"""Conflicting commits (another writer first) tolerated for one chunk before giving up."""
WRITE_BACKOFF_SECONDS = 0.5
"""First wait after a transient storage error; doubles per attempt, capped at 8 s."""
LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
"""Upper bounds of the produce → commit latency histogram each bronze commit records."""


@dataclass
class OpenChunk:
    """Decoded pieces waiting to be committed together.

    ``starts[p]``/``ends[p]``: the chunk accounts for offsets ``[starts[p], ends[p])`` of
    partition p: from where the previous chunk ended to the consumer's position when the last
    piece was cut (past any control markers). ``delivered`` holds the offsets actually read, so
    the offsets in between that the broker never delivered can be accounted as skipped.
    """

    valid_schema: pa.Schema
    invalid_schema: pa.Schema
    valid: list[pa.Table] = field(default_factory=list)
    invalid: list[pa.Table] = field(default_factory=list)
    delivered: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    starts: dict[int, int] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    records: int = 0
    nbytes: int = 0

    def add(
        self, decoded: DecodedChunk, partitions: np.ndarray, offsets: np.ndarray, nbytes: int
    ) -> None:
        self.valid.append(decoded.valid)
        self.invalid.append(decoded.invalid)
        self.delivered.append((partitions, offsets))
        self.records += len(offsets)
        self.nbytes += nbytes

    def take(self) -> ClosedChunk:
        """The chunk as one unit to commit; the open chunk restarts where this one ended."""
        parts = np.concatenate([p for p, _ in self.delivered]) if self.delivered else None
        offs = np.concatenate([o for _, o in self.delivered]) if self.delivered else None
        skipped: dict[int, list[tuple[int, int]]] = {}
        for p, end in self.ends.items():
            start = self.starts.get(p, end)
            got = offs[parts == p] if parts is not None and offs is not None else np.empty(0)
            ranges = skipped_ranges(start, end, got)
            if ranges:
                skipped[p] = ranges
        closed = ClosedChunk(
            decoded=DecodedChunk(
                valid=pa.concat_tables(self.valid)
                if self.valid
                else self.valid_schema.empty_table(),
                invalid=pa.concat_tables(self.invalid)
                if self.invalid
                else self.invalid_schema.empty_table(),
            ),
            starts={p: self.starts.get(p, e) for p, e in self.ends.items()},
            ends=dict(self.ends),
            skipped=skipped,
            records=self.records,
            nbytes=self.nbytes,
        )
        self.starts = dict(self.ends) | {p: s for p, s in self.starts.items() if p not in self.ends}
        self.valid, self.invalid, self.delivered = [], [], []
        self.ends, self.records, self.nbytes = {}, 0, 0
        return closed


@dataclass
class ClosedChunk:
    """One commit's worth of decoded records and the offsets it accounts for."""

    decoded: DecodedChunk
    starts: dict[int, int]
    ends: dict[int, int]
    skipped: dict[int, list[tuple[int, int]]]
    records: int
    nbytes: int


def skipped_ranges(start: int, end: int, delivered: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive ranges of ``[start, end)`` not in ``delivered`` (offsets in increasing order).

    Rule: the consumer reads a partition in order from ``start``, so an offset it passed without
    delivering holds no data record for it: a transaction marker, an aborted transactional
    record (read_committed) or a record compaction removed.
    """
    if end <= start:
        return []
    if delivered.size == 0:
        return [(start, end - 1)]
    d = delivered[(delivered >= start) & (delivered < end)]
    if d.size == 0:
        return [(start, end - 1)]
    out: list[tuple[int, int]] = []
    if int(d[0]) > start:
        out.append((start, int(d[0]) - 1))
    out.extend((int(d[i]) + 1, int(d[i + 1]) - 1) for i in np.nonzero(np.diff(d) > 1)[0].tolist())
    if int(d[-1]) + 1 < end:
        out.append((int(d[-1]) + 1, end - 1))
    return merge_ranges(out)


def unwritten(
    table: DeltaTable, rows: pa.Table, ids: Mapping[int, str], ends: Mapping[int, int]
) -> tuple[pa.Table, list[Transaction], dict[int, int | None]]:
    """What to append to ``table``: the rows it does not hold yet, and the txns that advance it.

    The table's log is re-read first, because another writer may have committed since our
    snapshot, and deltalake accepts a lower txn version silently: a partition whose stored
    version is already at or past ``ends[p]`` gets no txn, so its position never moves back.
    Also returns the stored versions it compared against.
    """
    table.update_incremental()
    done = {p: table.transaction_version(ids[p]) for p in ends}
    txns = [
        Transaction(ids[p], end)
        for p, end in ends.items()
        if (stored := done[p]) is None or end > stored
    ]
    return unseen(rows, done), txns, done


def unseen(table: pa.Table, done: Mapping[int, int | None]) -> pa.Table:
    """Rows whose offset is at or above the stored txn version of their partition.

    This is the rule that makes replays and racing writers safe: a Delta table never takes a
    record below its own stored position for that partition.
    """
    if not table.num_rows or all(v is None for v in done.values()):
        return table
    parts = table.column("_partition").to_numpy()
    offsets = table.column("_offset").to_numpy()
    keep = np.ones(len(parts), dtype=bool)
    for p, v in done.items():
        if v is not None:
            keep &= ~((parts == p) & (offsets < v))
    return table if keep.all() else table.filter(pa.array(keep))


@dataclass
class Committed:
    """What this writer itself wrote for one chunk (not what another writer wrote first)."""

    valid: pa.Table
    invalid: pa.Table
    skipped: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    """Offsets the bronze commit accounted as never delivered (markers, aborted, compacted)."""


@dataclass
class Committer:
    """Commits chunks of one topic to quarantine and bronze (see the module docstring)."""

    bronze: DeltaTable
    quarantine: DeltaTable
    topic: str
    group: str
    ids: dict[int, str]
    topic_id: str | None
    faults: FaultHook
    write_attempts: int = 4

    def commit(self, chunk: ClosedChunk, report: BatchReport) -> Committed:
        """Quarantine, then bronze. Raises on anything but retried conflicts/storage errors."""
        decoded = chunk.decoded
        self.faults.hit("before_quarantine_commit")
        t = time.perf_counter()
        invalid, _ = self._commit_table(
            self.quarantine, decoded.invalid, chunk, report, always=False, stats=_invalid_stats
        )
        report.add_stage("write_quarantine", time.perf_counter() - t)
        self.faults.hit("between_commits")

        self.faults.hit("before_bronze_commit")
        t = time.perf_counter()
        # Bronze's txn is the resume position, so it commits (even with no valid rows) while
        # any partition advances.
        valid, annotation = self._commit_table(
            self.bronze,
            decoded.valid,
            chunk,
            report,
            always=True,
            stats=lambda rows: _valid_stats(rows) | _chunk_stats(chunk, decoded),
        )
        report.add_stage("write_bronze", time.perf_counter() - t)
        self.faults.hit("after_bronze_commit")

        theirs = (decoded.valid.num_rows - valid.num_rows) + (
            decoded.invalid.num_rows - invalid.num_rows
        )
        if theirs:
            log.warning(
                "%s: %d records were already committed by another writer; skipped",
                self.topic,
                theirs,
            )
            report.skipped_already_committed += theirs
        skipped = annotation.skipped if annotation is not None else {}
        return Committed(valid=valid, invalid=invalid, skipped=skipped)

    def _commit_table(
        self,
        table: DeltaTable,
        rows_all: pa.Table,
        chunk: ClosedChunk,
        report: BatchReport,
        *,
        always: bool,
        stats: Any,
    ) -> tuple[pa.Table, CommitAnnotation | None]:
        """Append ``rows_all`` minus what ``table`` holds.

        Returns the rows this writer wrote and its commit's annotation (None: nothing to write).
        """
        io_errors = 0
        conflicts = 0
        attempt: tuple[pa.Table, CommitAnnotation, int] | None = None
        while True:
            try:
                # Re-reads are inside the retry too: an outage rarely spares reads.
                if attempt is not None:
                    table.update_incremental()
                    rows, annotation, version = attempt
                    if _landed(table, version, annotation.audit["commit_id"]):
                        log.info("%s: an earlier attempt's commit landed after all", self.topic)
                        report.commits += 1
                        return rows, annotation
                    attempt = None
                rows, txns, done = unwritten(table, rows_all, self.ids, chunk.ends)
                if not (rows.num_rows or (always and txns)):
                    return rows, None
                annotation = self._annotation(chunk, txns, done, table is self.bronze)
                annotation.stats = stats(rows)
                annotation.audit["commit_id"] = uuid.uuid4().hex
                attempt = (rows, annotation, table.version())
                write_deltalake(
                    table,
                    rows,
                    mode="append",
                    commit_properties=CommitProperties(
                        app_transactions=txns, custom_metadata=annotation.custom_metadata()
                    ),
                )
                report.commits += 1
                return rows, annotation
            except CommitFailedError as exc:
                attempt = None  # rejected: it certainly did not land
                conflicts += 1
                report.commit_conflicts += 1
                if conflicts >= MAX_COMMIT_ATTEMPTS:
                    raise
                log.warning(
                    "%s: concurrent commit (%s); re-reading the log (attempt %d)",
                    self.topic,
                    exc,
                    conflicts,
                )
                time.sleep(min(0.05 * conflicts, 1.0))
            except (OSError, DeltaError) as exc:
                if not is_transient(exc):
                    raise
                io_errors += 1
                if io_errors >= self.write_attempts:
                    raise
                report.write_retries += 1
                wait = min(WRITE_BACKOFF_SECONDS * 2 ** (io_errors - 1), 8.0)
                log.warning(
                    "%s: storage error writing %s (%s); retrying in %.1f s (%d of %d)",
                    self.topic,
                    "bronze" if table is self.bronze else "quarantine",
                    exc,
                    wait,
                    io_errors + 1,
                    self.write_attempts,
                )
                time.sleep(wait)

    def _annotation(
        self,
        chunk: ClosedChunk,
        txns: list[Transaction],
        done: Mapping[int, int | None],
        is_bronze: bool,
    ) -> CommitAnnotation:
        advancing = {
            p: (max(chunk.starts[p], done[p] or chunk.starts[p]), end)
            for p, end in chunk.ends.items()
            if any(t.app_id == self.ids[p] for t in txns)
        }
        skipped: dict[int, list[tuple[int, int]]] = {}
        if is_bronze:
            for p, (first, nxt) in advancing.items():
                kept = [(max(a, first), min(b, nxt - 1)) for a, b in chunk.skipped.get(p, [])]
                kept = [(a, b) for a, b in kept if a <= b]
                if kept:
                    skipped[p] = kept
        return CommitAnnotation(
            kind="ingest",
            topic=self.topic,
            topic_id=self.topic_id,
            group=self.group,
            ranges=advancing,
            skipped=skipped,
        )


def is_transient(exc: BaseException) -> bool:
    """Whether a failed write may succeed when tried again.

    Rule: storage errors are (deltalake raises ``OSError`` for an object-store failure that
    outlived the client's own retries, and a generic ``DeltaError`` when a data-file upload
    failed under the parquet writer); schema and protocol errors, a missing table and anything
    else are not. Retrying is always safe, because every attempt re-reads the log first.
    """
    if isinstance(exc, SchemaMismatchError | DeltaProtocolError | TableNotFoundError):
        return False
    return isinstance(exc, OSError | DeltaError)


def _landed(table: DeltaTable, since_version: int, commit_id: str) -> bool:
    return any(
        c.annotation.audit.get("commit_id") == commit_id
        for c in read_annotations(table, since_version)
    )


def _chunk_stats(chunk: ClosedChunk, decoded: DecodedChunk) -> dict[str, Any]:
    """Figures about the whole chunk, recorded on its bronze commit (metrics read only bronze)."""
    reasons: dict[str, int] = {}
    if decoded.invalid.num_rows:
        reasons = dict(Counter(decoded.invalid.column("error").to_pylist()))
    return {
        "records": chunk.records,
        "bytes": chunk.nbytes,
        "invalid": decoded.invalid.num_rows,
        "invalid_by_reason": reasons,
        "skipped_offsets": sum(b - a + 1 for rs in chunk.skipped.values() for a, b in rs),
    }


def hour_keys(rows: pa.Table) -> list[str]:
    """Sorted hour partition keys of the ``event_date``/``event_hour`` values of ``rows``."""
    if not rows.num_rows:
        return []
    pairs = rows.select(["event_date", "event_hour"]).group_by(["event_date", "event_hour"])
    agg = pairs.aggregate([])
    return sorted(
        hour_partition_key(d, h)
        for d, h in zip(
            agg.column("event_date").to_pylist(), agg.column("event_hour").to_pylist(), strict=True
        )
    )


def _invalid_stats(rows: pa.Table) -> dict[str, Any]:
    reasons = dict(Counter(rows.column("error").to_pylist())) if rows.num_rows else {}
    return {"rows": rows.num_rows, "by_reason": reasons}


def _valid_stats(rows: pa.Table) -> dict[str, Any]:
    """Rows, hours, late events and the produce → commit latency histogram of one bronze commit.

    ``hours`` (sorted Dagster hour partition keys of the rows) is what the derived layers read to
    know which hours this commit touched, without scanning the table.
    """
    out: dict[str, Any] = {"rows": rows.num_rows}
    if not rows.num_rows:
        return out
    out["hours"] = hour_keys(rows)
    now_us = int(datetime.now(UTC).timestamp() * 1e6)
    et = pc.cast(rows.column("event_time"), pa.int64())
    kt = pc.cast(rows.column("_kafka_timestamp"), pa.int64())
    arrival = pc.fill_null(kt, now_us)
    late = pc.greater(pc.subtract(arrival, et), int(LATE_THRESHOLD_SECONDS * 1e6))
    out["late"] = int(pc.sum(late).as_py() or 0)
    out["duplicate_event_ids"] = rows.num_rows - int(
        pc.count_distinct(rows.column("event_id")).as_py()
    )
    produced = kt.to_numpy(zero_copy_only=False)
    produced = produced[~np.isnan(produced)] if produced.dtype.kind == "f" else produced
    if produced.size:
        latency = (now_us - produced.astype(np.int64)) / 1e6
        idx = np.searchsorted(np.asarray(LATENCY_BUCKETS_SECONDS), latency, side="left")
        counts = np.bincount(idx, minlength=len(LATENCY_BUCKETS_SECONDS) + 1)
        out["latency_buckets"] = {
            "le": [*LATENCY_BUCKETS_SECONDS, "+Inf"],
            "counts": counts.tolist(),
            "sum_seconds": round(float(latency.sum()), 3),
        }
        out["kafka_timestamp_min_ms"] = int(produced.min()) // 1000
        out["kafka_timestamp_max_ms"] = int(produced.max()) // 1000
    return out
