"""Silver: each logical event once, chosen from its bronze deliveries.

Bronze is the faithful log and keeps producer retries (one ``event_id`` at several Kafka
offsets). Silver keeps one row per ``event_id``: the **first delivery**, i.e. the smallest
``_ingested_at``, then the smallest ``_partition``, then the smallest ``_offset``, and records in
``_deliveries`` how many deliveries the id had, so gold can count duplicates without bronze.
"""

from __future__ import annotations

import polars as pl

DELIVERIES = "_deliveries"
FIRST_DELIVERY_ORDER: tuple[str, ...] = ("_ingested_at", "_partition", "_offset")
"""The order in which deliveries of one ``event_id`` compete; the first one wins."""


def dedupe_first_delivery(bronze: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """One row per ``event_id``: its first delivery, plus ``_deliveries`` (int32, >= 1).

    Rule: among the rows sharing an ``event_id``, the winner has the smallest ``_ingested_at``,
    then ``_partition``, then ``_offset`` (Kafka coordinates are unique, so the order is total).

    Args:
        bronze: bronze rows (any subset, e.g. one hour partition).

    Returns:
        The rows (bronze's columns in bronze's order, then ``_deliveries``), in first-delivery
        order, and how many rows were removed as duplicates (``bronze.height - rows.height``).
    """
    columns = [c for c in bronze.columns if c != DELIVERIES]
    first = (
        bronze.select(columns)
        .sort(list(FIRST_DELIVERY_ORDER), maintain_order=True)
        .with_columns(pl.len().over("event_id").cast(pl.Int32).alias(DELIVERIES))
        .filter(pl.col("event_id").is_first_distinct())
    )
    return first, bronze.height - first.height


def late_expr(late_after_seconds: float) -> pl.Expr:
    """True for a late event: ``_ingested_at - event_time`` exceeds ``late_after_seconds``."""
    threshold = pl.duration(microseconds=round(late_after_seconds * 1_000_000))
    return (pl.col("_ingested_at") - pl.col("event_time")) > threshold


__all__ = ["DELIVERIES", "FIRST_DELIVERY_ORDER", "dedupe_first_delivery", "late_expr"]
