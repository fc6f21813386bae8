"""The contiguous-offsets check of a bronze table: every consumed offset is accounted for.

Rule (see :mod:`tidelake.quality.bronze`): per Kafka partition, every offset up to bronze's
stored resume position is in exactly one of bronze and quarantine, or lies in a range a commit
annotation records as ``skipped`` or ``accepted``. :func:`check_offsets_contiguous` checks it
over one batch's window (O(batch)) or, without a window, over the whole table (the audit,
O(history)). The reading, range and annotation helpers are in :mod:`tidelake.quality.offsets`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from deltalake import DeltaTable

from tidelake.contracts import QUARANTINE_PATH, TopicContract
from tidelake.ingest.annotations import read_annotations
from tidelake.ingest.positions import app_id
from tidelake.lake import Lake
from tidelake.quality.offsets import (
    GAP_COLUMNS,
    AnnotatedOffsets,
    OffsetWindow,
    RowsRead,
    Selection,
    annotated_offsets,
    clip_ranges,
    empty_rows,
    files_added_since,
    newest_topic_id,
    offset_gaps,
    offset_runs,
    overlapping_offsets,
    range_offsets,
    ranges_frame,
    read_rows,
    read_selection,
    same_topic,
    split_at_positions,
    uncovered,
)
from tidelake.quality.outcome import MAX_LISTED, CheckOutcome, count, window_meta
from tidelake.settings import KafkaSettings

ANNOTATION_LOOKBACK = 200
"""Commits searched before a window when an offset is in neither table nor the window's own
annotations (the boundary offset below the window, or quarantine's annotations)."""


@dataclass
class Coverage:
    """How the offsets one contiguity check looked at are accounted for.

    ``bronze``/``quarantine``: the rows read below their partition's stored position; ``ahead``:
    bronze rows at or past it; ``spans``: the inclusive offsets that had to be accounted for
    (None: the whole table); ``boundary``: partition → the offset before the window that is in
    neither table nor any annotation read.
    """

    positions: dict[int, int | None]
    bronze: pl.DataFrame
    quarantine: pl.DataFrame
    ahead: pl.DataFrame
    gaps: pl.DataFrame
    notes: AnnotatedOffsets
    spans: pl.DataFrame | None
    boundary: dict[int, int] = field(default_factory=dict)
    rows_read: int = 0
    files_read: int = 0


def check_offsets_contiguous(
    lake: Lake,
    contract: TopicContract,
    kafka: KafkaSettings,
    window: OffsetWindow | None = None,
    since_version: int | None = None,
) -> CheckOutcome:
    """Check that every consumed offset is in exactly one of bronze/quarantine, or annotated.

    With ``window`` (partition → ``[first, next)``) and ``since_version`` (bronze's version
    before the batch; None: the batch created the table), per partition every offset in
    ``[first, next)`` is a bronze or quarantine row, or lies in a ``skipped``/``accepted`` range
    of a bronze annotation newer than ``since_version``. The offset ``first - 1`` must be
    accounted for too when the partition had a position before; when it is not a row it is
    searched in the :data:`ANNOTATION_LOOKBACK` commits before the window (and in quarantine's
    newest annotations) before it is reported. Without ``window`` the same rule holds for the
    whole table, from the lowest offset accounted for, with every annotation of both tables.

    Bronze rows and positions come from one snapshot. Quarantine rows at or past a position
    belong to a batch whose bronze commit is still in flight (quarantine commits first) and are
    left out; a bronze row at or past its partition's position is a failure (data ahead of the
    stored position), and so is an offset in both tables. With ``since_version``, bronze rows
    are read from the files added since that version (see :mod:`tidelake.quality.bronze`): an
    offset not found there is looked up in every file before it is reported, but rows ahead of a
    position are only seen in those files (older ones are the whole-table audit's).
    """
    topic = contract.physical_topic(kafka.topic_prefix)
    bronze = lake.open(contract.bronze_path)
    if bronze is None:
        return CheckOutcome(True, "bronze table does not exist yet", {"partitions": 0})
    meta: dict[str, Any] = {
        "scope": "whole table" if window is None else "this run's offsets",
        "window": window_meta(window),
        "since_version": since_version,
        "table_version": bronze.version(),
    }
    if window is not None and not read_selection(window):
        meta |= dict.fromkeys(_COUNTS, 0) | {"accepted_gaps": []}
        return CheckOutcome(True, "nothing was added to bronze by this run", meta)
    quarantine = lake.open(QUARANTINE_PATH)
    ref = _TopicRef(kafka.consumer_group, topic, lake.storage_options)
    if window is None:
        cov = _whole_table_coverage(bronze, quarantine, ref)
    else:
        had_position = _position_at(lake, contract.bronze_path, ref, since_version)
        cov = _window_coverage(bronze, quarantine, ref, window, since_version, had_position)
    return _contiguity_outcome(cov, meta)


_COUNTS = (
    "partitions",
    "rows_read",
    "files_read",
    "missing_offsets",
    "gaps",
    "in_both_tables",
    "ahead_of_position",
    "skipped_offsets",
    "accepted_gap_offsets",
)


@dataclass(frozen=True)
class _TopicRef:
    """One physical topic of one consumer group, and how to reach the lake."""

    group: str
    topic: str
    storage_options: Mapping[str, str] = field(default_factory=dict)

    def position(self, table: DeltaTable, partition: int) -> int | None:
        return table.transaction_version(app_id(self.group, self.topic, partition))


def _whole_table_coverage(
    bronze: DeltaTable, quarantine: DeltaTable | None, ref: _TopicRef
) -> Coverage:
    commits = read_annotations(bronze, None, ref.topic)
    if quarantine is not None:
        commits += read_annotations(quarantine, None, ref.topic)
    notes = annotated_offsets(commits)
    cols = ["_partition", "_offset"]
    b_read = read_rows(bronze, cols, None, ref.topic)
    q_read = (
        read_rows(quarantine, cols, None, ref.topic)
        if quarantine
        else RowsRead(empty_rows(cols), 0)
    )
    partitions = sorted(
        {int(p) for f in (b_read.frame, q_read.frame) for p in f["_partition"].unique()}
        | {int(p) for f in (notes.skipped, notes.accepted) for p in f["_partition"].unique()}
        | set(notes.starts)
    )
    positions = {p: ref.position(bronze, p) for p in partitions}
    ends = {p: v for p, v in positions.items() if v is not None}
    b, ahead = split_at_positions(b_read.frame, ends)
    q, _ = split_at_positions(q_read.frame, ends)
    covered = pl.concat([notes.skipped, notes.accepted])
    return Coverage(
        positions=positions,
        bronze=b,
        quarantine=q,
        ahead=ahead,
        gaps=offset_gaps(pl.concat([b, q]), ends, covered, notes.starts),
        notes=notes,
        spans=None,
        rows_read=b_read.frame.height + q_read.frame.height,
        files_read=b_read.files + q_read.files,
    )


def _window_coverage(
    bronze: DeltaTable,
    quarantine: DeltaTable | None,
    ref: _TopicRef,
    window: OffsetWindow,
    since_version: int | None,
    had_position: Callable[[int], bool],
) -> Coverage:
    selection = read_selection(window)
    positions = {p: ref.position(bronze, p) for p, _, _ in selection}
    ends = {p: v for p, v in positions.items() if v is not None}
    commits = read_annotations(bronze, since_version, ref.topic)
    # Rows at or past a position should not exist, so adding them to the read is free unless
    # they do (and then they are the failure this check reports).
    ahead_too = [*selection, *((p, end, None) for p, end in ends.items())]
    reads = [_read_pair(bronze, quarantine, ref, ahead_too, selection, since_version)]
    spans = ranges_frame((p, window[p][0], nxt - 1) for p, _, nxt in selection if nxt is not None)
    seams = ranges_frame(
        (p, first - 1, first - 1) for p, (first, nxt) in window.items() if nxt > first > 0
    )
    notes = annotated_offsets(commits)
    gaps, open_seams = _gaps_and_seams(spans, seams, _runs(reads, ends), notes)
    if since_version is not None and (gaps.height or open_seams):
        # Not in those files: before calling these offsets missing, look for them in every
        # bronze file (statistics still prune, and only these offsets are read). Quarantine
        # was read without the bound already.
        again = [(p, window[p][0] - 1, window[p][0]) for p in open_seams] + [
            (int(p), int(a), int(b) + 1) for p, a, b in gaps.iter_rows()
        ]
        reads.append(_read_pair(bronze, quarantine, ref, again, [], None))
        gaps, open_seams = _gaps_and_seams(spans, seams, _runs(reads, ends), notes)
    if gaps.height or open_seams:
        # Older bronze commits, or quarantine's, may still account for these offsets.
        older = (
            list(commits)
            if since_version is None
            else read_annotations(bronze, max(-1, since_version - ANNOTATION_LOOKBACK), ref.topic)
        )
        if quarantine is not None:
            older += read_annotations(
                quarantine, max(-1, quarantine.version() - ANNOTATION_LOOKBACK), ref.topic
            )
        notes = annotated_offsets(same_topic(older, newest_topic_id(commits)))
        gaps, open_seams = _gaps_and_seams(spans, seams, _runs(reads, ends), notes)
        open_seams = [p for p in open_seams if had_position(p)]
    b, ahead = split_at_positions(pl.concat([b.frame for b, _ in reads]), ends)
    q, _ = split_at_positions(pl.concat([q.frame for _, q in reads]), ends)
    return Coverage(
        positions=positions,
        bronze=b,
        quarantine=q,
        ahead=ahead,
        gaps=gaps,
        notes=notes,
        spans=spans,
        boundary={p: window[p][0] - 1 for p in open_seams},
        rows_read=sum(b.frame.height + q.frame.height for b, q in reads),
        files_read=sum(b.files + q.files for b, q in reads),
    )


def _read_pair(
    bronze: DeltaTable,
    quarantine: DeltaTable | None,
    ref: _TopicRef,
    bronze_selection: Selection,
    quarantine_selection: Selection,
    since_version: int | None,
) -> tuple[RowsRead, RowsRead]:
    """Offsets of ``topic`` from both tables; from bronze only in files added by commits from
    bronze version ``since_version`` on (None: any file). Quarantine versions are not bronze
    versions, and quarantine is partitioned by topic, so statistics alone prune it."""
    cols = ["_partition", "_offset"]
    recent = (
        None
        if since_version is None
        else files_added_since(bronze, since_version, ref.storage_options)
    )
    b = read_rows(bronze, cols, bronze_selection, ref.topic, recent)
    if quarantine is None:
        return b, RowsRead(empty_rows(cols), 0)
    return b, read_rows(quarantine, cols, quarantine_selection, ref.topic)


def _runs(reads: Sequence[tuple[RowsRead, RowsRead]], ends: Mapping[int, int]) -> pl.DataFrame:
    """Runs of the offsets read from both tables, below the stored positions."""
    rows = pl.concat([r.frame for pair in reads for r in pair])
    return offset_runs(split_at_positions(rows, ends)[0])


def _gaps_and_seams(
    spans: pl.DataFrame, seams: pl.DataFrame, runs: pl.DataFrame, notes: AnnotatedOffsets
) -> tuple[pl.DataFrame, list[int]]:
    """Gaps inside ``spans``, and the partitions whose seam offset nothing accounts for."""
    cover = pl.concat([runs, notes.skipped, notes.accepted])
    open_seams = uncovered(seams, cover)["_partition"].to_list() if seams.height else []
    return uncovered(spans, cover), [int(p) for p in open_seams]


def _position_at(
    lake: Lake, path: str, ref: _TopicRef, version: int | None
) -> Callable[[int], bool]:
    """Whether a partition had a stored position at bronze ``version`` (opened only if asked).

    Without one the window starts at the first offset ever read, and the offset below it was
    never consumed (retention, or the topic starts there), so it is no seam to check.
    """
    snapshot: list[DeltaTable | None] = []

    def had(partition: int) -> bool:
        if version is None:
            return False
        if not snapshot:
            snapshot.append(lake.open(path, version=version))
        before = snapshot[0]
        return before is not None and ref.position(before, partition) is not None

    return had


def _contiguity_outcome(cov: Coverage, meta: dict[str, Any]) -> CheckOutcome:
    gaps = cov.gaps
    if cov.boundary:
        seam_gaps = pl.DataFrame(
            [(p, o, o) for p, o in sorted(cov.boundary.items())], schema=GAP_COLUMNS, orient="row"
        )
        gaps = pl.concat([seam_gaps, gaps]).sort("_partition", "first_missing", nulls_last=False)
    missing = int(
        (gaps["last_missing"] - gaps["first_missing"].fill_null(gaps["last_missing"]) + 1).sum()
    )
    both = overlapping_offsets(cov.bronze, cov.quarantine)
    skipped, accepted, audit = cov.notes.skipped, cov.notes.accepted, cov.notes.accepted_audit
    if cov.spans is not None:
        skipped, accepted = clip_ranges(skipped, cov.spans), clip_ranges(accepted, cov.spans)
        span = {p: (lo, hi) for p, lo, hi in cov.spans.iter_rows()}
        audit = [
            a
            for a in audit
            if a["partition"] in span
            and a["first"] <= span[a["partition"]][1]
            and a["last"] >= span[a["partition"]][0]
        ]
    meta |= {
        "partitions": len(cov.positions),
        "bronze_rows": cov.bronze.height,
        "quarantine_rows": cov.quarantine.height,
        "rows_read": cov.rows_read,
        "files_read": cov.files_read,
        "annotated_commits": cov.notes.commits,
        "missing_offsets": missing,
        "gaps": gaps.height,
        "in_both_tables": both.height,
        "ahead_of_position": cov.ahead.height,
        "skipped_offsets": range_offsets(skipped),
        "accepted_gap_offsets": range_offsets(accepted),
        "accepted_gaps": audit[:MAX_LISTED],
        "positions": {str(p): v for p, v in cov.positions.items()},
    }
    problems = []
    if gaps.height:
        meta["gap_examples"] = gaps.head(MAX_LISTED).to_dicts()
        problems.append(f"{count(gaps.height, 'gap')} ({count(missing, 'offset')} missing)")
    if cov.boundary:
        meta["boundary_missing"] = {str(p): o for p, o in sorted(cov.boundary.items())}
        seams = ", ".join(f"partition {p} offset {o}" for p, o in sorted(cov.boundary.items()))
        problems.append(f"the offset before the window is in neither table ({seams})")
    if both.height:
        meta["both_examples"] = both.head(MAX_LISTED).to_dicts()
        problems.append(f"{count(both.height, 'offset')} in both bronze and quarantine")
    if cov.ahead.height:
        meta["ahead_examples"] = cov.ahead.sort(cov.ahead.columns).head(MAX_LISTED).to_dicts()
        problems.append(
            f"{cov.ahead.height} bronze rows at or past the stored position (data ahead of it)"
        )
    if problems:
        return CheckOutcome(False, "; ".join(problems), meta)
    counted = [
        f"{meta['skipped_offsets']} skipped (markers, aborted or compacted)"
        if meta["skipped_offsets"]
        else "",
        f"{meta['accepted_gap_offsets']} accepted as lost" if meta["accepted_gap_offsets"] else "",
    ]
    note = "; ".join(c for c in counted if c)
    return CheckOutcome(
        True,
        f"{len(cov.positions)} partitions, every offset in exactly one of bronze/quarantine"
        + (f" ({note})" if note else ""),
        meta,
    )
