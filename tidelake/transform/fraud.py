"""Gold ``fraud_flags``: one row per (purchase event, rule) that a fraud rule flags.

Inputs are silver rows of ``shop.purchases``, ``shop.page_views`` and ``shop.clicks``. Rules are
evaluated for the purchase events of the requested hours; rows before those hours are CONTEXT
(purchases of :func:`context_window`, page views and clicks of :func:`browse_context`): they
count inside windows but are never flagged themselves. With the default thresholds
(:class:`FraudThresholds`, env ``TIDELAKE_FRAUD_<NAME>``, durations in ``..._SECONDS``), a purchase
event P at time ``t`` is flagged by:

``velocity`` (``VELOCITY_COUNT`` 5, ``VELOCITY_WINDOW`` 10 min)
    The user's purchase events with event_time in ``(t - 10 min, t]`` number >= 5, P included:
    in a burst of 7, the 5th, 6th and 7th are flagged. False positives: a shopper buying several
    items as separate single-line checkouts; a shared family account.
``ip_sharing`` (``IP_USERS`` 5, ``IP_WINDOW`` 60 min)
    Distinct users with a purchase from P's ``ip_address`` in ``(t - 60 min, t]`` >= 5, P's user
    included; the purchase that brings the count to 5 and later ones are flagged. False
    positives: offices, universities, hotels and carrier-grade NAT put many real shoppers behind
    one address; large households.
``payment_hopping`` (``PAYMENT_METHODS`` 3, ``PAYMENT_WINDOW`` 60 min)
    Distinct ``payment_method`` values of the user's purchases in ``(t - 60 min, t]`` >= 3.
    False positives: gift card + card split payments, a declined card retried with another
    method, invoice for one order and card for the next.
``high_value`` (``HIGH_VALUE_FACTOR`` 10, ``HIGH_VALUE_LOOKBACK`` 24 h, ``HIGH_VALUE_MIN_ORDERS``
20)
    The order total of P's order (sum of ``quantity * unit_price`` over the purchase events with
    P's ``order_id``) >= 10x the median total of the orders whose first purchase event lies in
    ``(f - 24 h, f)``, ``f`` = the first purchase event of P's order. Needs >= 20 such orders and
    a median > 0, else not evaluated. Every purchase event of such an order is flagged. Totals
    are compared across currencies as plain numbers. False positives: genuine bulk or business
    buyers, expensive products launched or on sale, quiet hours with a small baseline.
``purchase_without_browsing`` (``BROWSE_WINDOW`` 30 min)
    No page_view (``shop.page_views``) and no add_to_cart (``shop.clicks``) with P's
    ``session_id`` and ``product_id`` and event_time in ``[t - 30 min, t]``. Page views without a
    product never count. False positives: buying from a cart saved earlier or filled on another
    device (another session), "buy again" links, browsing longer than 30 min before buying.
``rapid_checkout`` (``RAPID_CHECKOUT`` 3 s)
    Some add_to_cart of P's session and product at ``a`` with ``0 <= t - a < 3 s``. False
    positives: one-click / "buy now" buttons that add to the cart and check out in one go.

``score`` (0-1, > 0 on every flag) says how far past its threshold the purchase is: for the
"at least" rules ``1 - threshold / (2 * observed)`` (the count, or the total/median ratio): 0.5
at the threshold, 0.75 at twice it. ``rapid_checkout``: ``1 - gap / (2 * limit)``;
``purchase_without_browsing``: 1.0 without any browsing, else ``1 - window / (2 * gap)`` of the
last browse. ``reason`` is a sentence with the figures and the threshold.

Because flags are recomputed from the inputs, a late page view or click re-evaluates the
purchases it precedes when their hour is refreshed: the flag disappears. An order whose first
purchase event lies shortly before the CONTEXT start sees a slightly shorter trailing median.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa

from tidelake.transform.fraud_rules import (
    FLAG_COLUMNS,
    FraudThresholds,
    high_value,
    ip_sharing,
    payment_hopping,
    velocity,
)
from tidelake.transform.fraud_sequence import purchase_without_browsing, rapid_checkout

_UTC_US = pa.timestamp("us", tz="UTC")
_TS = pl.Datetime("us", "UTC")
_HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"
"""Dagster's hourly partition key (the same as ``tidelake.layers.hours.HOUR_KEY_FORMAT``, not
imported because ``tidelake.layers`` imports this package)."""

FRAUD_RULES: tuple[str, ...] = (
    "velocity",
    "ip_sharing",
    "payment_hopping",
    "high_value",
    "purchase_without_browsing",
    "rapid_checkout",
)
"""The stable rule ids of ``gold/fraud_flags.rule``."""

FRAUD_FLAGS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("event_time", _UTC_US, nullable=False),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detected_at", _UTC_US, nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("event_hour", pa.int32(), nullable=False),
    ]
)
"""Arrow schema of ``gold/fraud_flags`` (partitioned by the purchase's ``event_time``)."""

PURCHASE_COLUMNS: Mapping[str, pl.DataType] = {
    "event_id": pl.String(),
    "event_time": _TS,
    "user_id": pl.String(),
    "session_id": pl.String(),
    "order_id": pl.String(),
    "product_id": pl.String(),
    "quantity": pl.Int64(),
    "unit_price": pl.Float64(),
    "currency": pl.String(),
    "payment_method": pl.String(),
    "ip_address": pl.String(),
}
BROWSE_COLUMNS: Mapping[str, pl.DataType] = {
    "session_id": pl.String(),
    "product_id": pl.String(),
    "event_type": pl.String(),
    "event_time": _TS,
}


def context_window(thresholds: FraudThresholds) -> timedelta:
    """How much purchase history before an evaluated hour the rules need."""
    return max(
        thresholds.velocity_window,
        thresholds.ip_window,
        thresholds.payment_window,
        thresholds.high_value_lookback,
    )


def browse_context(thresholds: FraudThresholds) -> timedelta:
    """How many page views and clicks before an evaluated hour the sequence rules need."""
    return max(thresholds.browse_window, thresholds.rapid_checkout)


def fraud_flags(
    purchases: pl.DataFrame,
    page_views: pl.DataFrame,
    clicks: pl.DataFrame,
    *,
    hours: Sequence[str] | None,
    thresholds: FraudThresholds,
    detected_at: datetime,
) -> pl.DataFrame:
    """The ``gold/fraud_flags`` rows of the purchase events in ``hours``.

    Args:
        purchases: silver purchases of the hours plus their CONTEXT (:func:`context_window`).
        page_views: silver page views of the hours plus :func:`browse_context` before.
        clicks: silver clicks (click and add_to_cart) over the same span as ``page_views``.
        hours: hour partition keys (``YYYY-MM-DD-HH:00``) whose purchases are evaluated;
            None evaluates every purchase given.
        thresholds: the rules' thresholds.
        detected_at: written to every row (the refresh time); must be timezone-aware.

    Returns:
        One row per (flagged purchase event, rule) in :data:`FRAUD_FLAGS_SCHEMA` column order,
        sorted by event_time, event_id, rule; an empty frame of that schema when nothing fires.

    Raises:
        ValueError: a non-empty input lacks a needed column, a key is not an hour, or
            ``detected_at`` is naive.
    """
    if detected_at.tzinfo is None:
        raise ValueError("detected_at must be timezone-aware (UTC)")
    history = _columns(purchases, PURCHASE_COLUMNS, "purchases").filter(
        pl.col("event_type") == "purchase"
    )
    views = _columns(page_views, BROWSE_COLUMNS, "page_views")
    carts = _columns(clicks, BROWSE_COLUMNS, "clicks")
    queries = history if hours is None else history.filter(_in_hours(hours))
    th = thresholds
    found = pl.concat(
        [
            velocity(queries.filter(pl.col("user_id").is_not_null()), history, th),
            ip_sharing(queries.filter(pl.col("ip_address").is_not_null()), history, th),
            payment_hopping(queries.filter(pl.col("payment_method").is_not_null()), history, th),
            high_value(queries.filter(pl.col("order_id").is_not_null()), history, th),
            purchase_without_browsing(queries, views, carts, th),
            rapid_checkout(queries, carts, th),
        ]
    ).select(FLAG_COLUMNS)
    at = pl.lit(detected_at.astimezone(UTC)).cast(_TS)
    return (
        found.join(queries.select("event_id", "order_id", "user_id", "event_time"), on="event_id")
        .select(
            "event_id",
            "order_id",
            "user_id",
            "event_time",
            "rule",
            "score",
            "reason",
            at.alias("detected_at"),
            pl.col("event_time").dt.date().alias("event_date"),
            pl.col("event_time").dt.hour().cast(pl.Int32).alias("event_hour"),
        )
        .sort("event_time", "event_id", "rule")
        .collect()
    )


def _columns(frame: pl.DataFrame, wanted: Mapping[str, pl.DataType], name: str) -> pl.LazyFrame:
    """The needed columns cast to their contract types; an empty frame may lack them."""
    columns = dict(wanted)
    if "event_type" not in columns:
        columns["event_type"] = pl.String()
    if frame.height == 0:
        return pl.LazyFrame(schema=columns)
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}")
    return frame.lazy().select(pl.col(c).cast(t) for c, t in columns.items())


def _in_hours(hours: Sequence[str]) -> pl.Expr:
    """True for an event_time inside one of the hour partition keys ``hours``."""
    starts = []
    for key in hours:
        start = datetime.strptime(key, _HOUR_KEY_FORMAT)
        if start.minute:
            raise ValueError(f"{key!r} is not an hour partition key (minutes must be 00)")
        starts.append(start.replace(tzinfo=UTC))
    return pl.col("event_time").dt.truncate("1h").is_in(pl.Series(starts, dtype=_TS).implode())


__all__ = [
    "BROWSE_COLUMNS",
    "FRAUD_FLAGS_SCHEMA",
    "FRAUD_RULES",
    "PURCHASE_COLUMNS",
    "FraudThresholds",
    "browse_context",
    "context_window",
    "fraud_flags",
]
