"""Data checks on the bronze and quarantine tables, as pure functions (no Dagster).

Three rules hold for every bronze table (docs/ARCHITECTURE.md, "Checks beside bronze"):

* **unique coordinates**: ``(_topic, _partition, _offset)`` is unique in bronze; bronze is the
  faithful log, so a repeated coordinate means a record was written twice.
* **contiguous offsets**: per Kafka partition, every offset up to bronze's stored resume position
  is accounted for exactly once: in bronze, in quarantine, or in a range a commit annotation
  (:mod:`tidelake.ingest.annotations`) records as ``skipped`` (transaction markers, aborted
  transactional records, compacted-away records: no data record to land) or ``accepted`` (an
  operator accepted the offsets as lost, with an audit). Anything else missing is a lost record.
* **contract schema**: the table's columns and types are the contract's, and the rows satisfy the
  contract's rules (non-null fields, allowed event types, numeric domains), checked with pandera.

Cost. The coordinate checks take a *window* (partition → ``[first, next)``, what one ingestion
batch accounted for: :attr:`tidelake.ingest.BatchReport.window`) and read only the rows whose
``(_partition, _offset)`` fall in ``[first - 1, next)``; the offset below the window is the seam
with what came before. Files are chosen from the Delta log before anything is read
(:func:`read_rows`): per-file min/max statistics of ``_partition``/``_offset`` rule out every
file that cannot hold a selected row. Statistics alone prune badly when one Kafka partition runs
far ahead of another (a hot key, transaction markers): a file mixing them spans a wide offset
range. So, given the batch's ``since_version``, only files added by commits from that version on
are candidates (:func:`files_added_since`; the seam is normally in commit ``since_version``, the
batch before), and an offset not found there is looked up in every file before it is reported
missing. A check thus costs O(batch), not O(history). Without a window the checks read the
whole table (an audit).

Every check returns a :class:`CheckOutcome`; the Dagster layer turns it into an asset check result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pandera.errors
import pandera.polars as pa
import polars as pl
import pyarrow
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from tidelake import contracts
from tidelake.contracts import QUARANTINE_PATH, TopicContract
from tidelake.ingest.annotations import AnnotatedCommit, read_annotations
from tidelake.ingest.positions import app_id
from tidelake.lake import Lake
from tidelake.settings import KafkaSettings

MAX_LISTED = 20
"""At most this many offending items (duplicates, gaps, failures) are listed in a check outcome."""

ANNOTATION_LOOKBACK = 200
"""Commits searched before a window when an offset is in neither table nor the window's own
annotations (the boundary offset below the window, or quarantine's annotations)."""

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

_COORDS = ["_topic", "_partition", "_offset"]
_COORD_TYPES: dict[str, pl.DataType] = {
    "_topic": pl.String(),
    "_partition": pl.Int32(),
    "_offset": pl.Int64(),
}
_RANGES: dict[str, pl.DataType] = {
    "_partition": pl.Int32(),
    "first": pl.Int64(),
    "last": pl.Int64(),
}
_GAPS: dict[str, pl.DataType] = {
    "_partition": pl.Int32(),
    "first_missing": pl.Int64(),
    "last_missing": pl.Int64(),
}

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "timestamp": pl.Datetime("us", "UTC"),
}
"""Polars dtype of each contract field kind, as bronze stores it."""

OffsetWindow = Mapping[int, tuple[int, int]]
"""Kafka partition → ``[first, next)`` offsets, e.g. what one ingestion run accounted for."""

Selection = Sequence[tuple[int, int, int | None]]
"""``(partition, first, next)`` offset ranges to read; ``next`` None: no upper bound."""


@dataclass
class CheckOutcome:
    """The result of one check: whether it passed, a one-line reason, and figures to report."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def meta_column_types() -> dict[str, tuple[pl.DataType, bool]]:
    """Polars dtype and nullability of each bronze metadata column.

    Derived from :data:`tidelake.contracts.BRONZE_META_FIELDS` when called, so a column added to
    the contract reaches the schema check without an edit here.
    """
    fields = list(contracts.BRONZE_META_FIELDS)
    dtypes = pl.DataFrame(pyarrow.schema(fields).empty_table()).schema
    return {f.name: (dtypes[f.name], f.nullable) for f in fields}


# -- reading -----------------------------------------------------------------------------------


def _scan(table: DeltaTable, lake: Lake) -> pl.LazyFrame:
    return pl.scan_delta(table, storage_options=lake.storage_options or None)


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
        return RowsRead(_empty(columns), 0)
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
    return RowsRead(frame.cast({c: _COORD_TYPES[c] for c in columns}), len(dataset.files))


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


def _empty(columns: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(schema={c: _COORD_TYPES[c] for c in columns})


# -- offset ranges -------------------------------------------------------------------------------


def ranges_frame(rows: Iterable[tuple[int, int, int]]) -> pl.DataFrame:
    """Inclusive offset ranges ``(_partition, first, last)`` as a frame."""
    return pl.DataFrame(list(rows), schema=_RANGES, orient="row")


def offset_runs(offsets: pl.DataFrame) -> pl.DataFrame:
    """Maximal runs of consecutive offsets per partition, as inclusive ``first``/``last`` ranges."""
    uniq = offsets.select("_partition", "_offset").unique().sort("_partition", "_offset")
    starts_run = (pl.col("_offset").diff().over("_partition") != 1).fill_null(True)
    return (
        uniq.with_columns(run=starts_run.cum_sum())
        .group_by("_partition", "run")
        .agg(first=pl.col("_offset").min(), last=pl.col("_offset").max())
        .select(pl.col(c).cast(t) for c, t in _RANGES.items())
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
        .select(pl.col(c).cast(t) for c, t in _RANGES.items())
        .sort("_partition", "first")
    )


def clip_ranges(ranges: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """The parts of ``ranges`` inside the span of their partition (one span per partition)."""
    return (
        ranges.join(spans.rename({"first": "lo", "last": "hi"}), on="_partition")
        .with_columns(first=pl.max_horizontal("first", "lo"), last=pl.min_horizontal("last", "hi"))
        .filter(pl.col("first") <= pl.col("last"))
        .select(list(_RANGES))
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
        [f.select(pl.col(c).cast(t) for c, t in _GAPS.items()) for f in (inner, head, tail)]
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
        cover = pl.concat([cover, covered.select(pl.col(c).cast(t) for c, t in _RANGES.items())])
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
        gaps = pl.concat([gaps, pl.DataFrame(unknown, schema=_GAPS, orient="row")])
    return gaps.sort("_partition", "first_missing", nulls_last=False)


def overlapping_offsets(bronze: pl.DataFrame, quarantine: pl.DataFrame) -> pl.DataFrame:
    """Offsets present in both bronze and quarantine.

    Rule: every record lands in exactly one of the two tables (valid → bronze, invalid →
    quarantine), so a coordinate in both means it was decoded twice, differently.
    """
    keys = ["_partition", "_offset"]
    return bronze.select(keys).unique().join(quarantine.select(keys).unique(), on=keys).sort(keys)


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


# -- unique coordinates --------------------------------------------------------------------------


def duplicate_coordinates(coords: pl.DataFrame) -> pl.DataFrame:
    """Coordinates ``(_topic, _partition, _offset)`` that occur more than once, with ``count``.

    Rule: a Kafka record has exactly one coordinate, so bronze holds each coordinate at most once.
    """
    return (
        coords.group_by(_COORDS)
        .agg(pl.len().alias("count"))
        .filter(pl.col("count") > 1)
        .sort(_COORDS)
    )


def check_unique_coordinates(
    lake: Lake,
    contract: TopicContract,
    window: OffsetWindow | None = None,
    since_version: int | None = None,
) -> CheckOutcome:
    """Check that ``bronze/<table>`` holds each Kafka coordinate at most once.

    With ``window``, only coordinates in ``[first - 1, next)`` of each partition are read, and
    with ``since_version`` too only from files added by commits from that version on (see
    :func:`files_added_since`): a batch that repeats a coordinate of itself, of a concurrent
    writer or of the batch before is caught; a repeat of a coordinate committed longer ago is
    left to the whole-table audit (no window). ``rows`` is the table's row count either way.
    """
    table = lake.open(contract.bronze_path)
    if table is None:
        return CheckOutcome(True, "bronze table does not exist yet", {"rows": 0, "rows_read": 0})
    meta: dict[str, Any] = {"table_version": table.version(), "window": _window_meta(window)}
    if window is not None and not read_selection(window):
        meta |= {"rows": table.count(), "rows_read": 0, "files_read": 0}
        return CheckOutcome(True, "nothing was added to bronze by this run", meta)
    recent = (
        files_added_since(table, since_version, lake.storage_options)
        if window is not None and since_version is not None
        else None
    )
    read = read_rows(
        table, _COORDS, None if window is None else read_selection(window), None, recent
    )
    coords = read.frame
    dups = duplicate_coordinates(coords)
    extra = int(dups["count"].sum() - dups.height) if dups.height else 0
    meta |= {
        "rows": coords.height if window is None else table.count(),
        "rows_read": coords.height,
        "files_read": read.files,
        "duplicate_coordinates": dups.height,
        "extra_rows": extra,
    }
    if dups.height:
        meta["examples"] = dups.head(MAX_LISTED).to_dicts()
        return CheckOutcome(
            False,
            f"{dups.height} Kafka coordinates occur more than once ({extra} extra rows)",
            meta,
        )
    scope = "rows" if window is None else "rows of this run's offsets"
    return CheckOutcome(True, f"{coords.height} {scope}, every Kafka coordinate once", meta)


# -- contiguous offsets --------------------------------------------------------------------------


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
    are read from the files added since that version (see the module docstring): an offset not
    found there is looked up in every file before it is reported, but rows ahead of a position
    are only seen in those files (older ones are the whole-table audit's).
    """
    topic = contract.physical_topic(kafka.topic_prefix)
    bronze = lake.open(contract.bronze_path)
    if bronze is None:
        return CheckOutcome(True, "bronze table does not exist yet", {"partitions": 0})
    meta: dict[str, Any] = {
        "scope": "whole table" if window is None else "this run's offsets",
        "window": _window_meta(window),
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
        read_rows(quarantine, cols, None, ref.topic) if quarantine else RowsRead(_empty(cols), 0)
    )
    partitions = sorted(
        {int(p) for f in (b_read.frame, q_read.frame) for p in f["_partition"].unique()}
        | {int(p) for f in (notes.skipped, notes.accepted) for p in f["_partition"].unique()}
        | set(notes.starts)
    )
    positions = {p: ref.position(bronze, p) for p in partitions}
    ends = {p: v for p, v in positions.items() if v is not None}
    b, ahead = _split_at_positions(b_read.frame, ends)
    q, _ = _split_at_positions(q_read.frame, ends)
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
        notes = annotated_offsets(_same_topic(older, _newest_topic_id(commits)))
        gaps, open_seams = _gaps_and_seams(spans, seams, _runs(reads, ends), notes)
        open_seams = [p for p in open_seams if had_position(p)]
    b, ahead = _split_at_positions(pl.concat([b.frame for b, _ in reads]), ends)
    q, _ = _split_at_positions(pl.concat([q.frame for _, q in reads]), ends)
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
        return b, RowsRead(_empty(cols), 0)
    return b, read_rows(quarantine, cols, quarantine_selection, ref.topic)


def _runs(reads: Sequence[tuple[RowsRead, RowsRead]], ends: Mapping[int, int]) -> pl.DataFrame:
    """Runs of the offsets read from both tables, below the stored positions."""
    rows = pl.concat([r.frame for pair in reads for r in pair])
    return offset_runs(_split_at_positions(rows, ends)[0])


def _gaps_and_seams(
    spans: pl.DataFrame, seams: pl.DataFrame, runs: pl.DataFrame, notes: AnnotatedOffsets
) -> tuple[pl.DataFrame, list[int]]:
    """Gaps inside ``spans``, and the partitions whose seam offset nothing accounts for."""
    cover = pl.concat([runs, notes.skipped, notes.accepted])
    open_seams = uncovered(seams, cover)["_partition"].to_list() if seams.height else []
    return uncovered(spans, cover), [int(p) for p in open_seams]


def _split_at_positions(
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


def _same_topic(commits: list[AnnotatedCommit], topic_id: str | None) -> list[AnnotatedCommit]:
    """Drop annotations of an earlier incarnation of the topic (a re-created topic has a new id
    and restarts its offsets, so its old ranges say nothing about the new offsets)."""
    if topic_id is None:
        return commits
    return [c for c in commits if c.annotation.topic_id in (None, topic_id)]


def _newest_topic_id(commits: Sequence[AnnotatedCommit]) -> str | None:
    return next((c.annotation.topic_id for c in reversed(commits) if c.annotation.topic_id), None)


def _contiguity_outcome(cov: Coverage, meta: dict[str, Any]) -> CheckOutcome:
    gaps = cov.gaps
    if cov.boundary:
        seam_gaps = pl.DataFrame(
            [(p, o, o) for p, o in sorted(cov.boundary.items())], schema=_GAPS, orient="row"
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
        problems.append(f"{_count(gaps.height, 'gap')} ({_count(missing, 'offset')} missing)")
    if cov.boundary:
        meta["boundary_missing"] = {str(p): o for p, o in sorted(cov.boundary.items())}
        seams = ", ".join(f"partition {p} offset {o}" for p, o in sorted(cov.boundary.items()))
        problems.append(f"the offset before the window is in neither table ({seams})")
    if both.height:
        meta["both_examples"] = both.head(MAX_LISTED).to_dicts()
        problems.append(f"{_count(both.height, 'offset')} in both bronze and quarantine")
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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _window_meta(window: OffsetWindow | None) -> dict[str, list[int]] | None:
    if window is None:
        return None
    return {str(p): [first, nxt] for p, (first, nxt) in sorted(window.items())}


# -- contract schema -----------------------------------------------------------------------------


def bronze_dataframe_schema(contract: TopicContract) -> pa.DataFrameSchema:
    """The pandera schema of ``bronze/<table>``, generated from the contract.

    Rules: every contract field and bronze metadata column is present with its bronze dtype;
    non-nullable fields have no nulls; ``event_id`` is a UUID; ``event_type`` is one the topic
    allows; ``non_negative`` fields are >= 0 and ``positive`` fields > 0; ``event_hour`` is 0-23.
    No other columns are allowed.
    """
    columns: dict[str, pa.Column] = {}
    for f in contract.all_fields:
        checks: list[pa.Check] = []
        if f.name == "event_id":
            checks.append(pa.Check.str_matches(UUID_PATTERN))
        if f.name == "event_type":
            checks.append(pa.Check.isin(sorted(contract.event_types)))
        if f.name in contract.non_negative:
            checks.append(pa.Check.ge(0))
        if f.name in contract.positive:
            checks.append(pa.Check.gt(0))
        columns[f.name] = pa.Column(
            POLARS_TYPES[f.kind], checks=checks, nullable=f.nullable, description=f.doc or None
        )
    for name, (dtype, nullable) in meta_column_types().items():
        checks = [pa.Check.in_range(0, 23)] if name == "event_hour" else []
        columns[name] = pa.Column(dtype, checks=checks, nullable=nullable)
    return pa.DataFrameSchema(columns, strict=True, name=f"bronze/{contract.table_name}")


def check_bronze_schema(
    lake: Lake, contract: TopicContract, window: OffsetWindow | None = None
) -> CheckOutcome:
    """Validate ``bronze/<table>`` against :func:`bronze_dataframe_schema`.

    Column names and dtypes are checked for the whole table (from the Delta schema, no data read);
    the row rules run over the rows in ``window`` (``None``: every row).
    """
    table = lake.open(contract.bronze_path)
    if table is None:
        return CheckOutcome(True, "bronze table does not exist yet", {"rows_validated": 0})
    schema = bronze_dataframe_schema(contract)
    lazy = _scan(table, lake)
    if window is not None and not window:
        rows = lazy.head(0).collect()
    else:
        rows = (lazy.filter(window_filter(window)) if window else lazy).collect()
    meta: dict[str, Any] = {
        "rows_validated": rows.height,
        "scope": "whole table" if window is None else "rows of this run",
        "table_version": table.version(),
    }
    try:
        schema.validate(rows, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        meta["failures"] = cases.height
        meta["failure_examples"] = [
            {k: (str(v) if v is not None else None) for k, v in row.items()}
            for row in cases.head(MAX_LISTED).to_dicts()
        ]
        checks = sorted({str(c) for c in cases["check"].to_list()})
        return CheckOutcome(False, f"{cases.height} schema failures: {', '.join(checks)}", meta)
    return CheckOutcome(True, f"{rows.height} rows match the contract schema", meta)
