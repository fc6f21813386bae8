"""Data checks on the bronze and quarantine tables, as pure functions (no Dagster).

Three rules hold for every bronze table (docs/ARCHITECTURE.md, "Checks that must hold"):

* **unique coordinates**: ``(_topic, _partition, _offset)`` is unique in bronze; bronze is the
  faithful log, so a repeated coordinate means a record was written twice.
* **contiguous offsets**: per Kafka partition, bronze and quarantine together hold every offset from
  the lowest one seen up to bronze's committed resume position, each exactly once. This topic has
  no compaction or transaction markers, so a gap is a lost record.
* **contract schema**: the table's columns and types are the contract's, and the rows satisfy the
  contract's rules (non-null fields, allowed event types, numeric domains), checked with pandera.

Coordinate checks read only the coordinate columns (a few bytes per row), so they stay around a
second for millions of rows; the schema check reads all columns, so callers scope its data rules to
the offsets a run just wrote (the rows before them were checked when they were written).

Every check returns a :class:`CheckOutcome`; the Dagster layer turns it into an asset check result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandera.errors
import pandera.polars as pa
import polars as pl
from deltalake import DeltaTable

from tidelake.contracts import QUARANTINE_PATH, TopicContract
from tidelake.ingest import app_id
from tidelake.lake import Lake
from tidelake.settings import KafkaSettings

MAX_LISTED = 20
"""At most this many offending items (duplicates, gaps, failures) are listed in a check outcome."""

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

_COORDS = ["_topic", "_partition", "_offset"]

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "timestamp": pl.Datetime("us", "UTC"),
}
"""Polars dtype of each contract field kind, as bronze stores it."""

_META_TYPES: dict[str, tuple[pl.DataType, bool]] = {
    "_topic": (pl.String(), False),
    "_partition": (pl.Int32(), False),
    "_offset": (pl.Int64(), False),
    "_kafka_timestamp": (pl.Datetime("us", "UTC"), True),
    "_key": (pl.String(), True),
    "_ingested_at": (pl.Datetime("us", "UTC"), False),
    "event_date": (pl.Date(), False),
    "event_hour": (pl.Int32(), False),
}

OffsetWindow = Mapping[int, tuple[int, int]]
"""Kafka partition → ``[first, next)`` offsets, e.g. what one ingestion run wrote."""


@dataclass
class CheckOutcome:
    """The result of one check: whether it passed, a one-line reason, and figures to report."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


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


def check_unique_coordinates(lake: Lake, contract: TopicContract) -> CheckOutcome:
    """Check that ``bronze/<table>`` holds each Kafka coordinate at most once (whole table)."""
    table = lake.open(contract.bronze_path)
    if table is None:
        return CheckOutcome(True, "bronze table does not exist yet", {"rows": 0})
    coords = _scan(table, lake).select(_COORDS).collect()
    dups = duplicate_coordinates(coords)
    extra = int(dups["count"].sum() - dups.height) if dups.height else 0
    meta: dict[str, Any] = {
        "rows": coords.height,
        "duplicate_coordinates": dups.height,
        "extra_rows": extra,
        "table_version": table.version(),
    }
    if dups.height:
        meta["examples"] = dups.head(MAX_LISTED).to_dicts()
        return CheckOutcome(
            False,
            f"{dups.height} Kafka coordinates occur more than once ({extra} extra rows)",
            meta,
        )
    return CheckOutcome(True, f"{coords.height} rows, every Kafka coordinate once", meta)


# -- contiguous offsets --------------------------------------------------------------------------


def offset_gaps(offsets: pl.DataFrame, ends: Mapping[int, int] | None = None) -> pl.DataFrame:
    """Missing offset ranges per partition: columns ``_partition, first_missing, last_missing``.

    Rule: between the lowest offset seen in a partition and its end (``ends[p]``, the committed
    resume position, exclusive; else the highest offset seen), every offset is present. Offsets may
    repeat in ``offsets``; repetition is not a gap (see :func:`overlapping_offsets`).

    Args:
        offsets: columns ``_partition`` and ``_offset`` (bronze and quarantine rows together).
        ends: partition → committed next offset; a partition whose end lies past its highest
            offset seen has a gap at the tail.
    """
    uniq = offsets.select("_partition", "_offset").unique().sort("_partition", "_offset")
    inner = (
        uniq.with_columns(prev=pl.col("_offset").shift(1).over("_partition"))
        .filter(pl.col("prev").is_not_null() & (pl.col("_offset") - pl.col("prev") > 1))
        .select(
            "_partition",
            (pl.col("prev") + 1).alias("first_missing"),
            (pl.col("_offset") - 1).alias("last_missing"),
        )
    )
    frames = [inner]
    if ends:
        highest = dict(uniq.group_by("_partition").agg(pl.col("_offset").max()).iter_rows())
        tail = [
            (p, int(highest[p]) + 1 if p in highest else None, end - 1)
            for p, end in ends.items()
            if end - 1 > highest.get(p, end - 1) or (p not in highest and end > 0)
        ]
        if tail:
            frames.append(
                pl.DataFrame(
                    tail,
                    schema={
                        "_partition": inner.schema["_partition"],
                        "first_missing": pl.Int64,
                        "last_missing": pl.Int64,
                    },
                    orient="row",
                )
            )
    return pl.concat(frames).sort("_partition", "first_missing", nulls_last=False)


def overlapping_offsets(bronze: pl.DataFrame, quarantine: pl.DataFrame) -> pl.DataFrame:
    """Offsets present in both bronze and quarantine.

    Rule: every record lands in exactly one of the two tables (valid → bronze, invalid →
    quarantine), so a coordinate in both means it was decoded twice, differently.
    """
    keys = ["_partition", "_offset"]
    return bronze.select(keys).unique().join(quarantine.select(keys).unique(), on=keys)


def check_offsets_contiguous(
    lake: Lake, contract: TopicContract, kafka: KafkaSettings
) -> CheckOutcome:
    """Check that bronze and quarantine cover every offset of each partition exactly once.

    Bronze is read at one snapshot, and its committed resume positions come from that same
    snapshot. Quarantine rows at or past a position belong to a batch whose bronze commit is still
    in flight (quarantine commits first), so they are left out rather than counted as gaps.
    """
    topic = contract.physical_topic(kafka.topic_prefix)
    bronze = lake.open(contract.bronze_path)
    if bronze is None:
        return CheckOutcome(True, "bronze table does not exist yet", {"partitions": 0})
    b = (
        _scan(bronze, lake)
        .filter(pl.col("_topic") == topic)
        .select("_partition", "_offset")
        .collect()
    )
    quarantine = lake.open(QUARANTINE_PATH)
    partitions = sorted(set(b["_partition"].unique().to_list()))
    q = (
        _scan(quarantine, lake)
        .filter(pl.col("_topic") == topic)
        .select("_partition", "_offset")
        .collect()
        if quarantine is not None
        else pl.DataFrame(schema={"_partition": pl.Int32, "_offset": pl.Int64})
    )
    partitions = sorted(set(partitions) | set(q["_partition"].unique().to_list()))
    positions = {
        p: bronze.transaction_version(app_id(kafka.consumer_group, topic, p)) for p in partitions
    }
    ends = {p: v for p, v in positions.items() if v is not None}
    for p, end in ends.items():
        q = q.filter((pl.col("_partition") != p) | (pl.col("_offset") < end))

    gaps = offset_gaps(pl.concat([b, q]), ends)
    both = overlapping_offsets(b, q)
    missing = int(
        (gaps["last_missing"] - gaps["first_missing"].fill_null(gaps["last_missing"]) + 1).sum()
    )
    meta: dict[str, Any] = {
        "partitions": len(partitions),
        "bronze_rows": b.height,
        "quarantine_rows": q.height,
        "missing_offsets": missing,
        "gaps": gaps.height,
        "in_both_tables": both.height,
        "positions": {str(p): v for p, v in positions.items()},
        "table_version": bronze.version(),
    }
    problems = []
    if gaps.height:
        meta["gap_examples"] = gaps.head(MAX_LISTED).to_dicts()
        problems.append(f"{gaps.height} gaps ({missing} offsets missing)")
    if both.height:
        meta["both_examples"] = both.head(MAX_LISTED).to_dicts()
        problems.append(f"{both.height} offsets in both bronze and quarantine")
    if problems:
        return CheckOutcome(False, "; ".join(problems), meta)
    return CheckOutcome(
        True,
        f"{len(partitions)} partitions, every offset in exactly one of bronze/quarantine",
        meta,
    )


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
    for name, (dtype, nullable) in _META_TYPES.items():
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
