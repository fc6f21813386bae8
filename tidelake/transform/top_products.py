"""Gold ``top_products_last_hour``: the most viewed products in a trailing window, as of a time.

One refresh writes one ranking: ``n`` rows (fewer when fewer products were viewed) that share
``as_of`` (the refresh time) and ``window_start`` (``as_of - window``). A product's ``views`` are
its page-view events with ``event_time`` in the half-open window ``[window_start, as_of)`` and a
non-null ``product_id``; ``unique_viewers`` are the distinct non-null ``user_id`` among them.
Rows are ordered by ``views`` descending, then ``product_id`` ascending, and ``rank`` numbers them
1..n in that order (no shared ranks: equal views are told apart by ``product_id``). The latest
ranking is the set of rows with the greatest ``as_of``. ``event_date``/``event_hour`` are the UTC
date and hour of ``as_of`` (the Delta partition of the refresh).

The same function answers the API's "top N over the last M minutes as of T": pass
``window=timedelta(minutes=M)``, ``n=N`` and ``as_of=T`` over the silver page views.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pyarrow as pa

_UTC_US = pa.timestamp("us", tz="UTC")

TOP_PRODUCTS_SCHEMA = pa.schema(
    [
        pa.field("as_of", _UTC_US, nullable=False),
        pa.field("window_start", _UTC_US, nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("views", pa.int64(), nullable=False),
        pa.field("unique_viewers", pa.int64(), nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("event_hour", pa.int32(), nullable=False),
    ]
)
"""Arrow schema of ``gold/top_products_last_hour`` (one row per (refresh, rank))."""

_PAGE_VIEW = "page_view"


def top_products(
    page_views: pl.DataFrame,
    *,
    as_of: datetime,
    window: timedelta = timedelta(hours=1),
    n: int = 10,
) -> pl.DataFrame:
    """The ``n`` most viewed products in ``[as_of - window, as_of)``, ranked.

    Args:
        page_views: silver ``shop.page_views`` rows (``product_id``, ``user_id``, ``event_time``;
            ``event_type`` and ``event_id`` are used when present: only ``page_view`` events
            count, and each ``event_id`` once, so a stray duplicate cannot inflate a count).
        as_of: the refresh time (timezone-aware); the window ends just before it.
        window: the window length (> 0).
        n: how many products to rank (>= 1).

    Returns:
        Rows in :data:`TOP_PRODUCTS_SCHEMA` order and types, by ``rank``; no rows when nothing
        was viewed in the window.

    Raises:
        ValueError: ``as_of`` is naive, ``window`` is not positive or ``n`` < 1.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if page_views.height == 0:
        return empty_top_products()
    window_start = as_of - window
    in_window = (
        pl.col("product_id").is_not_null()
        & (pl.col("event_time") >= window_start)
        & (pl.col("event_time") < as_of)
    )
    if "event_type" in page_views.columns:
        in_window &= pl.col("event_type") == _PAGE_VIEW
    views = pl.col("event_id").n_unique() if "event_id" in page_views.columns else pl.len()
    ranked = (
        page_views.lazy()
        .filter(in_window)
        .group_by("product_id")
        .agg(
            views.cast(pl.Int64).alias("views"),
            pl.col("user_id").drop_nulls().n_unique().cast(pl.Int64).alias("unique_viewers"),
        )
        .sort(["views", "product_id"], descending=[True, False])
        .head(n)
        .collect()
    )
    return ranked.select(
        pl.lit(as_of).cast(pl.Datetime("us", "UTC")).alias("as_of"),
        pl.lit(window_start).cast(pl.Datetime("us", "UTC")).alias("window_start"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("rank"),
        pl.col("product_id").cast(pl.String),
        "views",
        "unique_viewers",
        pl.lit(as_of).cast(pl.Datetime("us", "UTC")).dt.date().alias("event_date"),
        pl.lit(as_of).cast(pl.Datetime("us", "UTC")).dt.hour().cast(pl.Int32).alias("event_hour"),
    )


def empty_top_products() -> pl.DataFrame:
    """A ranking with no rows, in :data:`TOP_PRODUCTS_SCHEMA` column order and types."""
    frame = pl.from_arrow(TOP_PRODUCTS_SCHEMA.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


__all__ = ["TOP_PRODUCTS_SCHEMA", "empty_top_products", "top_products"]
