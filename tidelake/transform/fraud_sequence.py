"""The two sequence (CEP) fraud rules: what the session did with the product before buying it.

* ``purchase_without_browsing``: no page view and no add_to_cart of the purchased product in the
  purchase's session within ``[t - browse_window, t]``.
* ``rapid_checkout``: an add_to_cart of the product in the session with ``0 <= t - a < 3 s``.

Both need only the latest browse (or add_to_cart) at or before each purchase, per
(``session_id``, ``product_id``): one backward as-of join, no self-join. Because the answer is
recomputed from whatever page views are given, a late page view clears the flag on the next
refresh of the purchase's hour (see :mod:`tidelake.transform.fraud`).
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from tidelake.transform.fraud_rules import (
    FraudThresholds,
    duration_text,
    flags,
    gap_us,
    span_text,
)

_KEYS = ["session_id", "product_id"]
_US = timedelta(microseconds=1)


def _latest_before(queries: pl.LazyFrame, events: pl.LazyFrame) -> pl.LazyFrame:
    """``queries`` plus ``_seen_at``: the latest event of the session and product at or before t."""
    seen = events.select(*_KEYS, pl.col("event_time").alias("_seen_at")).unique().sort("_seen_at")
    return (
        queries.filter(pl.col("session_id").is_not_null() & pl.col("product_id").is_not_null())
        .sort("event_time")
        .join_asof(
            seen,
            left_on="event_time",
            right_on="_seen_at",
            by=_KEYS,
            strategy="backward",
            coalesce=False,
            check_sortedness=False,
        )
    )


def browse_events(page_views: pl.LazyFrame, clicks: pl.LazyFrame) -> pl.LazyFrame:
    """(session_id, product_id, event_time) of every page view of a product and add_to_cart."""
    views = page_views.filter(
        (pl.col("event_type") == "page_view") & pl.col("product_id").is_not_null()
    ).select(*_KEYS, "event_time")
    return pl.concat([views, add_to_carts(clicks)])


def add_to_carts(clicks: pl.LazyFrame) -> pl.LazyFrame:
    """(session_id, product_id, event_time) of the add_to_cart clicks."""
    return clicks.filter(pl.col("event_type") == "add_to_cart").select(*_KEYS, "event_time")


def purchase_without_browsing(
    queries: pl.LazyFrame, page_views: pl.LazyFrame, clicks: pl.LazyFrame, th: FraudThresholds
) -> pl.LazyFrame:
    """``purchase_without_browsing``: the latest browse is missing or before ``t - window``.

    Score: 1.0 when the session never browsed the product in the data given, else
    ``1 - window / (2 * gap)`` (0.5 just past the window, approaching 1 for older browsing).
    """
    w, t, seen = th.browse_window, pl.col("event_time"), pl.col("_seen_at")
    joined = _latest_before(queries, browse_events(page_views, clicks))
    hit = joined.filter(seen.is_null() | (seen < t - w))
    gap = gap_us(t, seen)
    window_us = w // _US
    base = pl.format(
        "no view or add_to_cart of product {} in session {} in the {} before",
        pl.col("product_id"),
        pl.col("session_id"),
        pl.lit(span_text(w)),
    )
    reason = (
        pl.when(seen.is_null())
        .then(base)
        .otherwise(pl.format("{} (the last one {} before)", base, duration_text(gap)))
    )
    score = pl.when(seen.is_null()).then(1.0).otherwise(1.0 - window_us / (2.0 * gap))
    return flags(hit, "purchase_without_browsing", score.clip(0.0, 1.0), reason)


def rapid_checkout(
    queries: pl.LazyFrame, clicks: pl.LazyFrame, th: FraudThresholds
) -> pl.LazyFrame:
    """``rapid_checkout``: the latest add_to_cart at or before ``t`` is less than the limit before.

    The latest one has the smallest gap, so it decides. Score: ``1 - gap / (2 * limit)``
    (1.0 for the same instant, 0.5 just under the limit).
    """
    limit_us = th.rapid_checkout // _US
    joined = _latest_before(queries, add_to_carts(clicks))
    gap = gap_us(pl.col("event_time"), pl.col("_seen_at"))
    hit = joined.filter(pl.col("_seen_at").is_not_null() & (gap < limit_us))
    reason = pl.format(
        "add_to_cart {} before purchase; threshold {}",
        duration_text(gap),
        pl.lit(span_text(th.rapid_checkout)),
    )
    return flags(hit, "rapid_checkout", (1.0 - gap / (2.0 * limit_us)).clip(0.0, 1.0), reason)


__all__ = [
    "add_to_carts",
    "browse_events",
    "purchase_without_browsing",
    "rapid_checkout",
]
