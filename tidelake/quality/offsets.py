"""Offset bookkeeping the bronze coordinate checks share: reading with file pruning, offset
ranges, and what the commit annotations say.

* **reading** (:func:`read_rows`, :func:`files_added_since`, :func:`read_selection`): a file is
  opened only if the Delta log says it may hold a selected row (partition values and per-file
  min/max statistics, tested during log replay), optionally narrowed to the files that commits
  from some version on added; the rows are then filtered exactly.
* **offset ranges** (:func:`offset_runs`, :func:`uncovered`, :func:`offset_gaps`, ...): inclusive
  ``(_partition, first, last)`` ranges as Polars frames: runs of rows, merged and clipped ranges,
  and the offsets no range accounts for.
* **annotations** (:func:`annotated_offsets`): the ``skipped`` and ``accepted`` ranges (with
  their audit) that commits recorded (:mod:`tidelake.ingest.annotations`), which account for
  offsets that hold no record by design.

Nothing here decides whether a check passes; :mod:`tidelake.quality.contiguity` and
:mod:`tidelake.quality.bronze` do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import polars as pl
import pyarrow
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from tidelake.ingest.annotations import AnnotatedCommit

COORDINATES = ["_topic", "_partition", "_offset"]
"""The Kafka coordinate columns of bronze (quarantine has the same three)."""

COORDINATE_TYPES: dict[str, pl.DataType] = {
    "_topic": pl.String(),
    "_partition": pl.Int32(),
    "_offset": pl.Int64(),
}
"""Polars dtype of each coordinate column, as the checks compare them."""

RANGE_COLUMNS: dict[str, pl.DataType] = {
    "_partition": pl.Int32(),
    "first": pl.Int64(),
    "last": pl.Int64(),
}
"""Columns of an inclusive offset-range frame."""

GAP_COLUMNS: dict[str, pl.DataType] = {
    "_partition": pl.Int32(),
    "first_missing": pl.Int64(),
    "last_missing": pl.Int64(),
}
"""Columns of a gap frame: inclusive missing ranges (``first_missing`` null: start unknown)."""

OffsetWindow = Mapping[int, tuple[int, int]]
"""Kafka partition → ``[first, next)`` offsets, e.g. what one ingestion run accounted for."""

Selection = Sequence[tuple[int, int, int | None]]
"""``(partition, first, next)`` offset ranges to read; ``next`` None: no upper bound."""


# -- reading -----------------------------------------------------------------------------------


def window_filter(window: OffsetWindow) -> pl.Expr:
    """Rows whose ``(_partition, _offset)`` falls in ``window`` (pushed down to file statistics)."""
    expr = pl.lit(False)
    for partition, (first, nxt) in window.items():
        expr = expr | (
            (pl.col("_partition") == partition) & pl.col("_offset").is_between(first, nxt - 1)
        )
    return expr


def read_selection(window: OffsetWindow) -> list[tuple[int, int, int | None]]:
    """What the coordinate checks read for ``window``: ``[first - 1, next)`` per partition."""
    return [
        (p, max(first - 1, 0), nxt) for p, (first, nxt) in sorted(window.items()) if nxt > first
    ]


@dataclass
class RowsRead:
    """Rows one :func:`read_rows` call returned and how many data files it opened."""

    frame: pl.DataFrame
    files: int


def read_rows(
    table: DeltaTable,
    columns: Sequence[str],
    selection: Selection | None,
    topic: str | None = None,
    files: AbstractSet[str] | None = None,
) -> RowsRead:
    """The ``columns`` of the rows of ``table`` in ``selection`` (None: every row) of ``topic``.

    Rule: a file is opened only if the Delta log says it may hold a selected row: its partition
    values and per-file min/max statistics are tested against the selection during log replay
    (deltalake's ``file_pruning_predicate``), so only those files become dataset fragments; the
    rows are then filtered exactly. ``files`` (table-relative paths, see
    :func:`files_added_since`) narrows the candidates further.
    """
    if selection is not None and not selection:
        return RowsRead(empty_rows(columns), 0)
    on_topic = [("_topic", "=", topic)] if topic is not None else []
    dnf: list[list[tuple[str, str, Any]]] = []
    exact: ds.Expression | None = None
    for p, first, nxt in selection if selection is not None else []:
        terms = [*on_topic, ("_partition", "=", p), ("_offset", ">=", first)]
        term = (ds.field("_partition") == p) & (ds.field("_offset") >= first)
        if nxt is not None:
            terms.append(("_offset", "<", nxt))
            term = term & (ds.field("_offset") < nxt)
        dnf.append(terms)
        exact = term if exact is None else exact | term
    if selection is None and on_topic:
        dnf = [on_topic]
    if topic is not None:
        on = ds.field("_topic") == topic
        exact = on if exact is None else exact & on
    dataset = table.to_pyarrow_dataset(file_pruning_predicate=dnf or None)
    if files is not None:
        fragments = [f for f in dataset.get_fragments() if unquote(f.path) in files]
        dataset = ds.FileSystemDataset(
            fragments, dataset.schema, dataset.format, dataset.filesystem
        )
    frame = pl.DataFrame(dataset.to_table(columns=list(columns), filter=exact))
    return RowsRead(frame.cast({c: COORDINATE_TYPES[c] for c in columns}), len(dataset.files))


def files_added_since(
    table: DeltaTable, version: int, storage_options: Mapping[str, str] | None = None
) -> set[str] | None:
    """Table-relative paths of the current data files that commits from ``version`` on added.

    The current snapshot's files minus those of the snapshot just before ``version`` (log
    metadata only, like opening the table; no data is read). Files OPTIMIZE rewrote count as
    added by it. None (no bound) for ``version`` 0 or when that snapshot is gone from the log.
    """
    if version <= 0:
        return None
    try:
        before = DeltaTable(
            table.table_uri, version=version - 1, storage_options=dict(storage_options or {})
        )
    except DeltaError:
        return None
    return _file_paths(table) - _file_paths(before)


def _file_paths(table: DeltaTable) -> set[str]:
    paths = pyarrow.table(table.get_add_actions()).column("path").to_pylist()
    return {unquote(p) for p in paths}


def empty_rows(columns: Sequence[str]) -> pl.DataFrame:
    """No rows, with the coordinate ``columns`` typed as :func:`read_rows` returns them."""
    return pl.DataFrame(schema={c: COORDINATE_TYPES[c] for c in columns})


# -- offset ranges -------------------------------------------------------------------------------


def ranges_frame(rows: Iterable[tuple[int, int, int]]) -> pl.DataFrame:
    """Inclusive offset ranges ``(_partition, first, last)`` as a frame."""
    return pl.DataFrame(list(rows), schema=RANGE_COLUMNS, orient="row")


def offset_runs(offsets: pl.DataFrame) -> pl.DataFrame:
    """Maximal runs of consecutive offsets per partition, as inclusive ``first``/``last`` ranges."""
    uniq = offsets.select("_partition", "_offset").unique().sort("_partition", "_offset")
    starts_run = (pl.col("_offset").diff().over("_partition") != 1).fill_null(True)
    return (
        uniq.with_columns(run=starts_run.cum_sum())
        .group_by("_partition", "run")
        .agg(first=pl.col("_offset").min(), last=pl.col("_offset").max())
        .select(pl.col(c).cast(t) for c, t in RANGE_COLUMNS.items())
        .sort("_partition", "first")
    )


def merge_range_frame(ranges: pl.DataFrame) -> pl.DataFrame:
    """Sorted ranges per partition with overlapping or adjacent ranges merged into one."""
    reach = pl.col("last").cum_max().shift(1).over("_partition")
    return (
        ranges.sort("_partition", "first")
        .with_columns(group=(reach.is_null() | (pl.col("first") > reach + 1)).cum_sum())
        .group_by("_partition", "group")
        .agg(pl.col("first").min(), pl.col("last").max())
        .select(pl.col(c).cast(t) for c, t in RANGE_COLUMNS.items())
        .sort("_partition", "first")
    )


def clip_ranges(ranges: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """The parts of ``ranges`` inside the span of their partition (one span per partition)."""
    return (
        ranges.join(spans.rename({"first": "lo", "last": "hi"}), on="_partition")
        .with_columns(first=pl.max_horizontal("first", "lo"), last=pl.min_horizontal("last", "hi"))
        .filter(pl.col("first") <= pl.col("last"))
        .select(list(RANGE_COLUMNS))
    )


def range_offsets(ranges: pl.DataFrame) -> int:
    """How many distinct offsets ``ranges`` hold."""
    merged = merge_range_frame(ranges)
    return int((merged["last"] - merged["first"] + 1).sum()) if merged.height else 0


def uncovered(spans: pl.DataFrame, covered: pl.DataFrame) -> pl.DataFrame:
    """The offsets of each span no covered range holds: ``_partition, first_missing, last_missing``.

    Args:
        spans: one inclusive range per partition, the offsets that must be accounted for.
        covered: inclusive ranges that account for offsets (runs of rows, annotated ranges).
    """
    merged = merge_range_frame(clip_ranges(covered, spans))
    inner = (
        merged.with_columns(prev=pl.col("last").shift(1).over("_partition"))
        .filter(pl.col("prev").is_not_null() & (pl.col("first") > pl.col("prev") + 1))
        .select("_partition", first_missing=pl.col("prev") + 1, last_missing=pl.col("first") - 1)
    )
    bounds = merged.group_by("_partition").agg(lo=pl.col("first").min(), hi=pl.col("last").max())
    edges = spans.join(bounds, on="_partition", how="left")
    head = edges.filter(pl.col("lo").is_null() | (pl.col("first") < pl.col("lo"))).select(
        "_partition",
        first_missing=pl.col("first"),
        last_missing=pl.when(pl.col("lo").is_null()).then("last").otherwise(pl.col("lo") - 1),
    )
    tail = edges.filter(pl.col("hi") < pl.col("last")).select(
        "_partition", first_missing=pl.col("hi") + 1, last_missing=pl.col("last")
    )
    return pl.concat(
        [f.select(pl.col(c).cast(t) for c, t in GAP_COLUMNS.items()) for f in (inner, head, tail)]
    ).sort("_partition", "first_missing")


def offset_gaps(
    offsets: pl.DataFrame,
    ends: Mapping[int, int] | None = None,
    covered: pl.DataFrame | None = None,
    starts: Mapping[int, int] | None = None,
) -> pl.DataFrame:
    """Missing offset ranges per partition: columns ``_partition, first_missing, last_missing``.

    Rule: from the lowest offset accounted for in a partition (a row, a ``covered`` range, or
    ``starts[p]``) to its end (``ends[p]``, the stored resume position, exclusive; else the
    highest offset accounted for), every offset is a row or lies in a ``covered`` range. Offsets
    may repeat in ``offsets``; repetition is not a gap (see :func:`overlapping_offsets`). A
    partition with an end but nothing accounted for gets one gap with an unknown start (null).

    Args:
        offsets: columns ``_partition`` and ``_offset`` (bronze and quarantine rows together).
        ends: partition → stored next offset; an end past the highest offset seen is a lost tail.
        covered: inclusive ``(_partition, first, last)`` ranges that hold no record by design
            (skipped or accepted offsets from the commit annotations).
        starts: partition → first offset the engine accounted for (from annotations).
    """
    cover = offset_runs(offsets)
    if covered is not None:
        cover = pl.concat(
            [cover, covered.select(pl.col(c).cast(t) for c, t in RANGE_COLUMNS.items())]
        )
    bounds: dict[int, tuple[int, int | None]] = {
        int(p): (int(lo), int(hi))
        for p, lo, hi in cover.group_by("_partition")
        .agg(pl.col("first").min(), pl.col("last").max())
        .iter_rows()
    }
    for p, start in (starts or {}).items():
        lo, hi = bounds.get(p, (start, None))
        bounds[p] = (min(lo, start), hi)
    unknown: list[tuple[int, int | None, int]] = []
    for p, end in (ends or {}).items():
        if p in bounds:
            lo, hi = bounds[p]
            bounds[p] = (lo, end - 1 if hi is None else max(hi, end - 1))
        elif end > 0:
            unknown.append((p, None, end - 1))
    spans = ranges_frame(
        (p, lo, hi) for p, (lo, hi) in sorted(bounds.items()) if hi is not None and lo <= hi
    )
    gaps = uncovered(spans, cover)
    if unknown:
        gaps = pl.concat([gaps, pl.DataFrame(unknown, schema=GAP_COLUMNS, orient="row")])
    return gaps.sort("_partition", "first_missing", nulls_last=False)


def overlapping_offsets(bronze: pl.DataFrame, quarantine: pl.DataFrame) -> pl.DataFrame:
    """Offsets present in both bronze and quarantine.

    Rule: every record lands in exactly one of the two tables (valid → bronze, invalid →
    quarantine), so a coordinate in both means it was decoded twice, differently.
    """
    keys = ["_partition", "_offset"]
    return bronze.select(keys).unique().join(quarantine.select(keys).unique(), on=keys).sort(keys)


def split_at_positions(
    rows: pl.DataFrame, ends: Mapping[int, int]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``rows`` below their partition's stored position, and those at or past it."""
    if not ends:
        return rows, rows.head(0)
    positions = pl.DataFrame(
        {"_partition": list(ends), "_end": list(ends.values())},
        schema={"_partition": pl.Int32, "_end": pl.Int64},
    )
    tagged = rows.join(positions, on="_partition", how="left").with_columns(
        below=pl.col("_end").is_null() | (pl.col("_offset") < pl.col("_end"))
    )
    keep = rows.columns
    return (
        tagged.filter(pl.col("below")).select(keep),
        tagged.filter(~pl.col("below")).select(keep),
    )


# -- what the commit annotations say -------------------------------------------------------------


@dataclass
class AnnotatedOffsets:
    """What a set of commit annotations says about one topic's offsets.

    ``skipped`` and ``accepted`` are inclusive ``(_partition, first, last)`` ranges;
    ``accepted_audit`` one entry per accepted range (partition, first, last, reason, by, at);
    ``starts`` the lowest offset each partition's annotated ``ranges`` begin at.
    """

    skipped: pl.DataFrame
    accepted: pl.DataFrame
    accepted_audit: list[dict[str, Any]]
    starts: dict[int, int]
    commits: int


def annotated_offsets(commits: Iterable[AnnotatedCommit]) -> AnnotatedOffsets:
    """Collect the skipped and accepted ranges (with their audit) of ``commits``."""
    skipped: list[tuple[int, int, int]] = []
    accepted: list[tuple[int, int, int]] = []
    audit: list[dict[str, Any]] = []
    starts: dict[int, int] = {}
    n = 0
    for commit in commits:
        n += 1
        note = commit.annotation
        skipped += [(p, a, b) for p, rs in note.skipped.items() for a, b in rs]
        for p, rs in note.accepted.items():
            for a, b in rs:
                accepted.append((p, a, b))
                audit.append(_accepted_entry(commit, p, a, b))
        for p, (first, _) in note.ranges.items():
            starts[p] = min(first, starts.get(p, first))
    return AnnotatedOffsets(ranges_frame(skipped), ranges_frame(accepted), audit, starts, n)


def _accepted_entry(commit: AnnotatedCommit, p: int, first: int, last: int) -> dict[str, Any]:
    audit = commit.annotation.audit
    at = audit.get("at")
    if at is None and commit.timestamp_ms is not None:
        at = datetime.fromtimestamp(commit.timestamp_ms / 1000, UTC).isoformat()
    return {
        "partition": p,
        "first": first,
        "last": last,
        "reason": audit.get("reason"),
        "by": audit.get("by"),
        "at": at,
    }


def same_topic(commits: list[AnnotatedCommit], topic_id: str | None) -> list[AnnotatedCommit]:
    """Drop annotations of an earlier incarnation of the topic (a re-created topic has a new id
    and restarts its offsets, so its old ranges say nothing about the new offsets)."""
    if topic_id is None:
        return commits
    return [c for c in commits if c.annotation.topic_id in (None, topic_id)]


def newest_topic_id(commits: Sequence[AnnotatedCommit]) -> str | None:
    """The topic id recorded by the newest annotation that has one (None: none has)."""
    return next((c.annotation.topic_id for c in reversed(commits) if c.annotation.topic_id), None)
