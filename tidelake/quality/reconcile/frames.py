"""The frames the comparison reads, and how lake tables are normalized into them.

:func:`~tidelake.quality.reconcile.comparison.compare` takes Polars frames (or Arrow tables) with
the schemas below; every topic in them is the LOGICAL name (``shop.clicks``). The ``*_frame``
helpers turn the lake's tables, whose ``_topic`` is the physical Kafka topic, into those frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TypeAlias

import polars as pl
import pyarrow as pa

from tidelake.contracts import TOPICS, TopicContract, topic_for_physical
from tidelake.ledger import LedgerKind

SILVER_PREFIX = "silver"
"""Silver tables live at ``silver/<table_name>``; the silver columns appear once they exist."""

EVENT_KINDS: tuple[str, ...] = (LedgerKind.ON_TIME, LedgerKind.LATE, LedgerKind.DUPLICATE)
"""Ledger kinds that carry a valid event which must land in bronze (and once in silver)."""

LEDGER_COLUMNS: tuple[str, ...] = (
    "run_id",
    "topic",
    "event_id",
    "event_time",
    "kind",
    "expected_error",
    "partition",
    "offset",
    "produced_at",
)

_TS = pl.Datetime("us", "UTC")
LEDGER_FRAME_SCHEMA = pl.Schema(
    {
        "run_id": pl.String(),
        "topic": pl.String(),
        "event_id": pl.String(),
        "event_time": _TS,
        "kind": pl.String(),
        "expected_error": pl.String(),
        "partition": pl.Int32(),
        "offset": pl.Int64(),
        "produced_at": _TS,
    }
)
"""Columns :func:`compare` reads from the ledger (those of ``LEDGER_SCHEMA``; topic is logical)."""

BRONZE_FRAME_SCHEMA = pl.Schema(
    {
        "topic": pl.String(),
        "event_id": pl.String(),
        "event_time": _TS,
        "partition": pl.Int32(),
        "offset": pl.Int64(),
    }
)
"""Bronze as :func:`compare` wants it: the LOGICAL topic and the Kafka coordinates, unprefixed
names (see :func:`bronze_frame`)."""

QUARANTINE_FRAME_SCHEMA = pl.Schema(
    {"topic": pl.String(), "partition": pl.Int32(), "offset": pl.Int64(), "error": pl.String()}
)
"""Quarantine as :func:`compare` wants it: the LOGICAL topic (see :func:`quarantine_frame`)."""

SILVER_FRAME_SCHEMA = pl.Schema({"topic": pl.String(), "event_id": pl.String(), "event_time": _TS})
"""Silver as :func:`compare` wants it (optional; see :func:`silver_frame`)."""

FrameLike: TypeAlias = pl.DataFrame | pa.Table

_OPTIONAL = frozenset({"produced_at", "expected_error"})


def silver_path(contract: TopicContract) -> str:
    """``silver/<table_name>``: where a topic's silver table lives (DESIGN, "Lake layout")."""
    return contract.silver_path


def as_polars(data: FrameLike) -> pl.DataFrame:
    return data if isinstance(data, pl.DataFrame) else pl.DataFrame(pl.from_arrow(data))


def coerce(data: FrameLike | None, schema: pl.Schema, what: str) -> pl.DataFrame:
    """Coerce ``data`` to a frame with exactly ``schema``'s columns and types (empty if None).

    Timestamps become UTC (naive ones are taken as UTC); ``produced_at`` and ``expected_error``
    may be absent (null), any other absent column is an error.
    """
    if data is None:
        return pl.DataFrame(schema=schema)
    df = as_polars(data)
    absent = [c for c in schema if c not in df.columns]
    if [c for c in absent if c not in _OPTIONAL]:
        raise ValueError(f"{what} frame lacks columns {absent}; has {df.columns}")
    df = df.with_columns(pl.lit(None, dtype=schema[c]).alias(c) for c in absent)
    casts = []
    for name, dtype in schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            current = df.schema[name]
            if isinstance(current, pl.Datetime) and current.time_zone is None:
                col = col.dt.replace_time_zone("UTC")
            elif isinstance(current, pl.Datetime) and current.time_zone != "UTC":
                col = col.dt.convert_time_zone("UTC")
        casts.append(col.cast(dtype).alias(name))
    return df.select(casts)


def bronze_frame(table: FrameLike, contract: TopicContract, topic_prefix: str = "") -> pl.DataFrame:
    """Normalize a bronze table (``bronze_schema()`` columns) to :data:`BRONZE_FRAME_SCHEMA`.

    Rule: only rows whose physical ``_topic`` is exactly ``contract.physical_topic(topic_prefix)``
    belong to this environment; rows of other prefixes sharing the lake are dropped.
    """
    df = as_polars(table).filter(pl.col("_topic") == contract.physical_topic(topic_prefix))
    df = df.select(
        pl.lit(contract.name).alias("topic"),
        "event_id",
        "event_time",
        pl.col("_partition").alias("partition"),
        pl.col("_offset").alias("offset"),
    )
    return coerce(df, BRONZE_FRAME_SCHEMA, "bronze")


def silver_frame(table: FrameLike, contract: TopicContract, topic_prefix: str = "") -> pl.DataFrame:
    """Normalize a silver table (bronze columns + ``_deliveries``) to :data:`SILVER_FRAME_SCHEMA`.

    Rule: as for bronze, only rows of this environment's physical topic count (when the table
    carries ``_topic``).
    """
    df = as_polars(table)
    if "_topic" in df.columns:
        df = df.filter(pl.col("_topic") == contract.physical_topic(topic_prefix))
    df = df.select(pl.lit(contract.name).alias("topic"), "event_id", "event_time")
    return coerce(df, SILVER_FRAME_SCHEMA, "silver")


def quarantine_frame(
    table: FrameLike, topic_prefix: str = "", topics: Iterable[str] | None = None
) -> pl.DataFrame:
    """Normalize the quarantine table to :data:`QUARANTINE_FRAME_SCHEMA` with logical topics.

    Rule: a row belongs to this environment only if its physical ``_topic`` is ``topic_prefix`` +
    a contract topic (restricted to ``topics`` when given); the logical name comes from
    :func:`tidelake.contracts.topic_for_physical`.
    """
    wanted = list(topics) if topics is not None else list(TOPICS)
    physical = {TOPICS[t].physical_topic(topic_prefix): t for t in wanted}
    df = as_polars(table).filter(pl.col("_topic").is_in(list(physical)))
    mapping = {p: topic_for_physical(p, topic_prefix).name for p in physical}
    df = df.select(
        pl.col("_topic").replace_strict(mapping, return_dtype=pl.String).alias("topic"),
        pl.col("_partition").alias("partition"),
        pl.col("_offset").alias("offset"),
        "error",
    )
    return coerce(df, QUARANTINE_FRAME_SCHEMA, "quarantine")


def in_window(col: pl.Expr, since: datetime | None, until: datetime | None) -> pl.Expr:
    """``col`` in ``[since, until)``; an absent bound is unbounded."""
    cond = pl.lit(True)
    if since is not None:
        cond = cond & (col >= since)
    if until is not None:
        cond = cond & (col < until)
    return cond


def utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; a naive datetime is taken as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
