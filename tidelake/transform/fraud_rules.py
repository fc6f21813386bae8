"""Fraud thresholds, the purchase-history rules and the helpers every rule shares.

The rules here look only at purchases: ``velocity``, ``ip_sharing``, ``payment_hopping`` and
``high_value`` (their semantics and false-positive modes are documented in
:mod:`tidelake.transform.fraud`). Each rule takes the **queries** (the purchase events being
evaluated) and the **history** (every purchase given, context rows included) and returns the
flagged queries as ``event_id``, ``rule``, ``score``, ``reason``.

Windows are counted with as-of joins against cumulative counts instead of self-joins, so one
busy user or IP costs O(n log n), not O(n²).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import polars as pl

from tidelake.settings import FraudThresholds

FLAG_COLUMNS: tuple[str, ...] = ("event_id", "rule", "score", "reason")
"""The columns every rule returns, one row per flagged purchase event."""

_TS = pl.Datetime("us", "UTC")


# -- shared text and score helpers -------------------------------------------------------------


def duration_text(us: pl.Expr) -> pl.Expr:
    """A duration in microseconds (>= 0) as ``1.2 s``, ``6 min 40 s``, ``60 min`` or ``2 h 5 min``.

    Figures are floored, so a gap just under a threshold never prints as the threshold itself.
    """
    secs = us // 1_000_000
    tenths = us // 100_000
    seconds = (
        pl.when(tenths % 10 == 0)
        .then(pl.format("{} s", tenths // 10))
        .otherwise(pl.format("{}.{} s", tenths // 10, tenths % 10))
    )
    minutes = (
        pl.when(secs % 60 == 0)
        .then(pl.format("{} min", secs // 60))
        .otherwise(pl.format("{} min {} s", secs // 60, secs % 60))
    )
    hours = (
        pl.when(secs % 3600 // 60 == 0)
        .then(pl.format("{} h", secs // 3600))
        .otherwise(pl.format("{} h {} min", secs // 3600, secs % 3600 // 60))
    )
    # Up to an hour reads as minutes ("60 min" next to windows like "10 min").
    return pl.when(secs < 60).then(seconds).when(secs <= 3600).then(minutes).otherwise(hours)


def gap_us(later: pl.Expr, earlier: pl.Expr) -> pl.Expr:
    """``later - earlier`` in whole microseconds."""
    return (later - earlier).dt.total_microseconds()


def span_text(window: timedelta) -> str:
    """A threshold window in the same words as :func:`duration_text`."""
    us = window // timedelta(microseconds=1)
    return str(pl.select(duration_text(pl.lit(us, dtype=pl.Int64))).item())


def money_text(amount: pl.Expr) -> pl.Expr:
    """An amount with two decimals and thousands separators: ``4,210.00``."""
    cents = (amount * 100).round(0).cast(pl.Int64)
    whole = (
        (cents // 100)
        .cast(pl.String)
        .str.reverse()
        .str.replace_all(r"(\d{3})", "${1},")
        .str.reverse()
        .str.strip_chars_start(",")
    )
    return pl.format("{}.{}", whole, (cents % 100).cast(pl.String).str.zfill(2))


def at_least_score(observed: pl.Expr, threshold: float) -> pl.Expr:
    """Score of an "observed >= threshold" rule: ``1 - threshold / (2 * observed)``.

    0.5 exactly at the threshold, approaching 1 the further past it (2x the threshold: 0.75).
    """
    return (1.0 - threshold / (2.0 * observed.cast(pl.Float64))).clip(0.0, 1.0)


def flags(frame: pl.LazyFrame, rule: str, score: pl.Expr, reason: pl.Expr) -> pl.LazyFrame:
    """The rule's flagged rows in :data:`FLAG_COLUMNS` form."""
    return frame.select(
        pl.col("event_id"),
        pl.lit(rule, dtype=pl.String).alias("rule"),
        score.cast(pl.Float64).alias("score"),
        reason.cast(pl.String).alias("reason"),
    )


# -- window counting ---------------------------------------------------------------------------


def count_at_or_before(
    queries: pl.LazyFrame, at: pl.Expr, events: pl.LazyFrame, on: str, by: Sequence[str], name: str
) -> pl.LazyFrame:
    """``queries`` plus ``name``: how many ``events`` of the same ``by`` have ``on`` <= ``at``.

    The events' running count per key (ties share the largest) is as-of joined to each query.
    """
    running = (
        events.select(*by, pl.col(on).alias("_at"))
        .sort("_at")
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(by).alias(name))
        .group_by(*by, "_at")
        .agg(pl.col(name).max())
        .sort("_at")
    )
    return (
        queries.with_columns(at.alias("_q"))
        .sort("_q")
        .join_asof(
            running,
            left_on="_q",
            right_on="_at",
            by=list(by),
            strategy="backward",
            coalesce=False,
            check_sortedness=False,
        )
        .with_columns(pl.col(name).fill_null(0))
        .drop("_q", "_at")
    )


def first_after(
    queries: pl.LazyFrame, after: pl.Expr, events: pl.LazyFrame, on: str, by: Sequence[str]
) -> pl.LazyFrame:
    """``queries`` plus ``_first``: the earliest ``on`` of the same ``by`` after ``after`` (>)."""
    times = events.select(*by, pl.col(on).alias("_first")).unique().sort("_first")
    return (
        queries.with_columns(after.alias("_q"))
        .sort("_q")
        .join_asof(
            times,
            left_on="_q",
            right_on="_first",
            by=list(by),
            strategy="forward",
            allow_exact_matches=False,
            coalesce=False,
            check_sortedness=False,
        )
        .drop("_q")
    )


def within_reach(history: pl.LazyFrame, queries: pl.LazyFrame, window: timedelta) -> pl.LazyFrame:
    """The history rows some query's window ``(t - window, t]`` can contain.

    The history carries a day of CONTEXT for ``high_value``; the short windows skip most of it.
    """
    t = pl.col("event_time")
    bounds = queries.select(t.min().alias("_lo"), t.max().alias("_hi"))
    return (
        history.join(bounds, how="cross")
        .filter((t > pl.col("_lo") - window) & (t <= pl.col("_hi")))
        .drop("_lo", "_hi")
    )


def events_in_window(
    queries: pl.LazyFrame, history: pl.LazyFrame, by: Sequence[str], window: timedelta
) -> pl.LazyFrame:
    """``queries`` plus ``_count``: history events of the same ``by`` in ``(t - window, t]``."""
    t = pl.col("event_time")
    upto = count_at_or_before(queries, t, history, "event_time", by, "_upto")
    before = count_at_or_before(upto, t - window, history, "event_time", by, "_before")
    return before.with_columns((pl.col("_upto") - pl.col("_before")).alias("_count"))


def distinct_in_window(
    queries: pl.LazyFrame, history: pl.LazyFrame, by: str, member: str, window: timedelta
) -> pl.LazyFrame:
    """``queries`` plus ``_count``: distinct ``member`` values of ``by``'s history in the window.

    A member is present at ``t`` when one of its events ``e`` has ``t - window < e <= t``, i.e.
    when ``t`` lies in the union of its intervals ``[e, e + window)``. Those unions ("spells")
    are disjoint per member, so the distinct count is ``#spells started <= t - #ended <= t``.
    """
    t = pl.col("event_time")
    spells = (
        history.select(by, member, "event_time")
        .sort(by, member, "event_time")
        .with_columns(
            (
                (t - t.shift(1).over(by, member) >= window)
                .fill_null(True)
                .cum_sum()
                .over(by, member)
            ).alias("_spell")
        )
        .group_by(by, member, "_spell")
        .agg(t.min().alias("_start"), (t.max() + window).alias("_end"))
    )
    started = count_at_or_before(queries, t, spells, "_start", [by], "_started")
    ended = count_at_or_before(started, t, spells, "_end", [by], "_ended")
    return ended.with_columns((pl.col("_started") - pl.col("_ended")).alias("_count"))


# -- the purchase-history rules ----------------------------------------------------------------


def velocity(queries: pl.LazyFrame, history: pl.LazyFrame, th: FraudThresholds) -> pl.LazyFrame:
    """``velocity``: the user's purchase events in ``(t - window, t]`` number >= the count."""
    w, t = th.velocity_window, pl.col("event_time")
    history = within_reach(history, queries, w)
    counted = events_in_window(queries, history, ["user_id"], w).filter(
        pl.col("_count") >= th.velocity_count
    )
    hit = first_after(counted, t - w, history, "event_time", ["user_id"])
    reason = pl.format(
        "{} purchases in {}; threshold {} in {}",
        pl.col("_count"),
        duration_text(gap_us(t, pl.col("_first"))),
        pl.lit(th.velocity_count),
        pl.lit(span_text(w)),
    )
    return flags(hit, "velocity", at_least_score(pl.col("_count"), th.velocity_count), reason)


def ip_sharing(queries: pl.LazyFrame, history: pl.LazyFrame, th: FraudThresholds) -> pl.LazyFrame:
    """``ip_sharing``: distinct users buying from the IP in ``(t - window, t]`` >= ``ip_users``."""
    w, t = th.ip_window, pl.col("event_time")
    history = within_reach(history, queries, w)
    counted = distinct_in_window(queries, history, "ip_address", "user_id", w).filter(
        pl.col("_count") >= th.ip_users
    )
    hit = first_after(counted, t - w, history, "event_time", ["ip_address"])
    reason = pl.format(
        "{} users bought from {} within {}; threshold {} in {}",
        pl.col("_count"),
        pl.col("ip_address"),
        duration_text(gap_us(t, pl.col("_first"))),
        pl.lit(th.ip_users),
        pl.lit(span_text(w)),
    )
    return flags(hit, "ip_sharing", at_least_score(pl.col("_count"), th.ip_users), reason)


def payment_hopping(
    queries: pl.LazyFrame, history: pl.LazyFrame, th: FraudThresholds
) -> pl.LazyFrame:
    """``payment_hopping``: the user's distinct payment methods in the window >= the count."""
    w, t = th.payment_window, pl.col("event_time")
    history = within_reach(history, queries, w)
    counted = distinct_in_window(queries, history, "user_id", "payment_method", w).filter(
        pl.col("_count") >= th.payment_methods
    )
    # Only flagged purchases are expanded into their window's purchases, to name the methods.
    used = (
        counted.select("event_id", "user_id", "event_time")
        .join(
            history.select("user_id", pl.col("event_time").alias("_e"), "payment_method"),
            on="user_id",
        )
        .filter((pl.col("_e") > t - w) & (pl.col("_e") <= t))
        .sort("event_id", "_e", "payment_method")
        .group_by("event_id")
        .agg(
            pl.col("payment_method").unique(maintain_order=True).str.join(", ").alias("_methods"),
            pl.col("_e").min().alias("_first"),
        )
    )
    hit = counted.join(used, on="event_id")
    reason = pl.format(
        "{} payment methods ({}) in {}; threshold {} in {}",
        pl.col("_count"),
        pl.col("_methods"),
        duration_text(gap_us(t, pl.col("_first"))),
        pl.lit(th.payment_methods),
        pl.lit(span_text(w)),
    )
    return flags(
        hit, "payment_hopping", at_least_score(pl.col("_count"), th.payment_methods), reason
    )


def high_value(queries: pl.LazyFrame, history: pl.LazyFrame, th: FraudThresholds) -> pl.LazyFrame:
    """``high_value``: the order total >= factor x the median total of the orders that started in
    ``(f - lookback, f)``, ``f`` = the order's first purchase event; needs ``min_orders`` of them.

    A zero median is no baseline (every order would be "10x" it), so it is not evaluated.
    """
    lookback, first = th.high_value_lookback, pl.col("_first_at")
    orders = history.group_by("order_id").agg(
        pl.col("event_time").min().alias("_first_at"),
        (pl.col("quantity") * pl.col("unit_price")).sum().cast(pl.Float64).alias("_total"),
        pl.col("currency").sort_by("event_time").first().alias("_currency"),
    )
    wanted = orders.join(queries.select("order_id").unique(), on="order_id", how="semi")
    bounds = wanted.select(first.min().alias("_lo"), first.max().alias("_hi"))
    # The rolling median is the expensive step: roll only over the orders the queries can see.
    trailing = (
        orders.join(bounds, how="cross")
        .filter((first > pl.col("_lo") - lookback) & (first <= pl.col("_hi")))
        .sort("_first_at")
        .with_columns(
            pl.col("_total")
            .rolling_median_by("_first_at", window_size=lookback, closed="none")
            .alias("_median"),
            first.is_not_null()
            .cast(pl.Int64)
            .rolling_sum_by("_first_at", window_size=lookback, closed="none")
            .alias("_orders"),
        )
        .join(wanted.select("order_id"), on="order_id", how="semi")
        .filter(
            (pl.col("_orders") >= th.high_value_min_orders)
            & (pl.col("_median") > 0)
            & (pl.col("_total") >= th.high_value_factor * pl.col("_median"))
        )
        .with_columns((pl.col("_total") / pl.col("_median")).alias("_ratio"))
    )
    hit = queries.join(trailing, on="order_id")
    tenths = (pl.col("_ratio") * 10).floor().cast(pl.Int64)
    reason = pl.format(
        "order total {} {} is {}.{}x the trailing median {} ({} orders in {}); threshold {}x",
        money_text(pl.col("_total")),
        pl.col("_currency"),
        tenths // 10,
        tenths % 10,
        money_text(pl.col("_median")),
        pl.col("_orders"),
        pl.lit(span_text(lookback)),
        pl.lit(f"{th.high_value_factor:g}"),
    )
    return flags(hit, "high_value", at_least_score(pl.col("_ratio"), th.high_value_factor), reason)


__all__ = [
    "FLAG_COLUMNS",
    "FraudThresholds",
    "at_least_score",
    "count_at_or_before",
    "distinct_in_window",
    "duration_text",
    "events_in_window",
    "first_after",
    "flags",
    "gap_us",
    "high_value",
    "ip_sharing",
    "money_text",
    "payment_hopping",
    "span_text",
    "velocity",
    "within_reach",
]
