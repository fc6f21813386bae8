"""Windowed gold: events per (topic, event_type, minute or hour of ``event_time``), UTC.

* ``events``: distinct events (silver rows; silver has one row per ``event_id``).
* ``late_events``: events whose first delivery came more than ``late_after_seconds`` after
  their ``event_time`` (``_ingested_at - event_time``).
* ``duplicates``: bronze deliveries minus events, i.e. ``sum(_deliveries) - events``.
* ``event_date``/``event_hour``: the UTC date and hour of ``window_start`` (the Delta partition).

An event belongs to exactly one minute, so summing minutes gives the hour's distinct events.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from tidelake.transform.silver import DELIVERIES, late_expr

_UTC_US = pa.timestamp("us", tz="UTC")

EVENTS_PER_MINUTE_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("window_start", _UTC_US, nullable=False),
        pa.field("events", pa.int64(), nullable=False),
        pa.field("late_events", pa.int64(), nullable=False),
        pa.field("duplicates", pa.int64(), nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("event_hour", pa.int32(), nullable=False),
    ]
)
"""Arrow schema of ``gold/events_per_minute`` (``window_start`` is the minute)."""

EVENTS_PER_HOUR_SCHEMA = EVENTS_PER_MINUTE_SCHEMA
"""Arrow schema of ``gold/events_per_hour``: the same columns, ``window_start`` is the hour."""

WINDOW_COLUMNS: tuple[str, ...] = tuple(EVENTS_PER_MINUTE_SCHEMA.names)
_COUNTS = ("events", "late_events", "duplicates")
_ORDER = ["window_start", "topic", "event_type"]


def events_per_minute(silver: pl.DataFrame, topic: str, late_after_seconds: float) -> pl.DataFrame:
    """Per (event_type, minute of ``event_time``) of one topic's silver rows: the counts above.

    Args:
        silver: silver rows (``event_type``, ``event_time``, ``_ingested_at``, ``_deliveries``).
        topic: the logical topic name written to ``topic`` (e.g. ``shop.clicks``).
        late_after_seconds: the lateness threshold (``TIDELAKE_LATE_AFTER_SECONDS``).

    Returns:
        Rows in :data:`EVENTS_PER_MINUTE_SCHEMA` column order and types, sorted by window.
    """
    grouped = (
        silver.lazy()
        .with_columns(
            pl.col("event_time").dt.truncate("1m").alias("window_start"),
            late_expr(late_after_seconds).alias("_late"),
        )
        .group_by("event_type", "window_start")
        .agg(
            pl.len().cast(pl.Int64).alias("events"),
            pl.col("_late").sum().cast(pl.Int64).alias("late_events"),
            pl.col(DELIVERIES).cast(pl.Int64).sum().alias("_deliveries_sum"),
        )
        .with_columns(
            pl.lit(topic, dtype=pl.String).alias("topic"),
            (pl.col("_deliveries_sum") - pl.col("events")).alias("duplicates"),
        )
    )
    return _finish(grouped)


def events_per_hour(per_minute: pl.DataFrame) -> pl.DataFrame:
    """Per (topic, event_type, UTC hour): the per-minute counts summed.

    Args:
        per_minute: rows of ``gold/events_per_minute`` (any set of whole or partial hours).

    Returns:
        Rows in :data:`EVENTS_PER_HOUR_SCHEMA` column order and types, sorted by window.
    """
    grouped = (
        per_minute.lazy()
        .with_columns(pl.col("window_start").dt.truncate("1h"))
        .group_by("topic", "event_type", "window_start")
        .agg(*(pl.col(c).cast(pl.Int64).sum() for c in _COUNTS))
    )
    return _finish(grouped)


def _finish(grouped: pl.LazyFrame) -> pl.DataFrame:
    """Add the partition columns from ``window_start`` (UTC), order columns and rows."""
    return (
        grouped.with_columns(
            pl.col("window_start").dt.date().alias("event_date"),
            pl.col("window_start").dt.hour().cast(pl.Int32).alias("event_hour"),
        )
        .select(
            pl.col("topic").cast(pl.String),
            pl.col("event_type").cast(pl.String),
            pl.col("window_start").cast(pl.Datetime("us", "UTC")),
            *(pl.col(c).cast(pl.Int64) for c in _COUNTS),
            "event_date",
            "event_hour",
        )
        .sort(_ORDER)
        .collect()
    )


def to_arrow(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame`` as an Arrow table of exactly ``schema`` (names, order, types, nullability).

    Polars exports ``large_string`` and drops non-null flags; Delta schemas want the contract's.

    Raises:
        pyarrow.ArrowInvalid: a non-nullable column holds nulls, or a type does not cast.
    """
    return frame.select(schema.names).to_arrow().cast(schema)


__all__ = [
    "EVENTS_PER_HOUR_SCHEMA",
    "EVENTS_PER_MINUTE_SCHEMA",
    "WINDOW_COLUMNS",
    "events_per_hour",
    "events_per_minute",
    "to_arrow",
]
