"""Gold ``cohort_retention``: first-activity cohorts and their day-N retention, UTC days.

Definitions (one row per (``cohort_date``, ``day_offset``)):

* A user's **cohort** is the UTC date of their first event on any user topic (page views,
  clicks, searches, purchases, app interactions), over all history.
* ``cohort_size``: users whose cohort is ``cohort_date``.
* ``retained_users``: cohort users with >= 1 event **on** day ``cohort_date + day_offset``
  (bounded, "N-day" retention); ``retention_rate = retained_users / cohort_size``. Day 0 is
  100 % by construction.
* ``retained_users_unbounded``: cohort users with >= 1 event **on or after** that day (any later
  day, also beyond ``max_offset``); ``retention_rate_unbounded`` likewise. It never increases
  with ``day_offset``.
* A row exists only for days that have happened (``cohort_date + day_offset <= as_of``): a day
  that has not happened yet is not a 0 % retention. Activity after ``as_of`` is ignored, so a
  recomputation "as of" an old day gives what was known on that day.

How this compares with the product-analytics tools (their documented defaults):

* Amplitude: "N-day retention" counts users active on exactly day N (our ``retained_users``);
  its "unbounded retention" counts users active on day N *or any later day* (our
  ``retained_users_unbounded``). Amplitude's starting event is configurable; ours is "any event",
  the first one ever (a "new user" cohort).
* Mixpanel: a "first time" cohort (users who did the event for the first time on a day) with
  "retention on day N" is our bounded definition; its "recurring" mode (a user re-enters a cohort
  each day they act) is not what this table computes.
* PostHog: "first time" retention (cohort by the first occurrence) matches our cohorts; its
  "recurring" mode does not. Its "on or after" retention toggle is our unbounded column, its
  default ("on" the period) our bounded one.

Days are UTC calendar days (the tools use the project's time zone). Late data matters: a late
event on day D can change the bounded rows of cohorts D-30..D (see :func:`affected_cohorts`),
and a user's first-ever event arriving late moves the user from a later cohort to D, and the
unbounded columns of the user's cohort can change at any age; :func:`cohorts_touched` gives the
exact set from the new activity rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import polars as pl
import pyarrow as pa

COHORT_RETENTION_SCHEMA = pa.schema(
    [
        pa.field("cohort_date", pa.date32(), nullable=False),
        pa.field("day_offset", pa.int32(), nullable=False),
        pa.field("cohort_size", pa.int64(), nullable=False),
        pa.field("retained_users", pa.int64(), nullable=False),
        pa.field("retention_rate", pa.float64(), nullable=False),
        pa.field("retained_users_unbounded", pa.int64(), nullable=False),
        pa.field("retention_rate_unbounded", pa.float64(), nullable=False),
    ]
)
"""Arrow schema of ``gold/cohort_retention`` (``cohort_date`` is its daily partition)."""

ACTIVITY_SCHEMA = {"user_id": pl.String, "activity_date": pl.Date}
"""Columns of :func:`user_activity`: one row per (user, UTC day with >= 1 event)."""

MAX_OFFSET = 30


def user_activity(events: pl.DataFrame) -> pl.DataFrame:
    """Distinct (``user_id``, UTC ``activity_date``) of events (rows with a null user dropped).

    Args:
        events: rows with ``user_id`` and ``event_time`` (timezone-aware), from any user topics;
            concatenating the per-topic activities and calling this again is the same as calling
            it on all events at once.
    """
    if events.height == 0:
        return pl.DataFrame(schema=ACTIVITY_SCHEMA)
    date_expr = (
        pl.col("activity_date")
        if "activity_date" in events.columns
        else pl.col("event_time").dt.convert_time_zone("UTC").dt.date()
    )
    return (
        events.lazy()
        .filter(pl.col("user_id").is_not_null())
        .select(pl.col("user_id").cast(pl.String), date_expr.cast(pl.Date).alias("activity_date"))
        .unique()
        .sort("activity_date", "user_id")
        .collect()
    )


def cohort_retention(
    activity: pl.DataFrame,
    *,
    cohort_dates: Sequence[date] | None = None,
    max_offset: int = MAX_OFFSET,
    as_of: date | None = None,
) -> pl.DataFrame:
    """Retention of first-activity cohorts on days 0..``max_offset`` (definitions above).

    Args:
        activity: distinct (``user_id``, ``activity_date``) over **all** history (the cohort of
            a user is their first date in it, so a partial history would invent new users).
            Duplicate rows are tolerated.
        cohort_dates: output only these cohorts (e.g. the ones late data touched); None = all.
        max_offset: the last ``day_offset`` (>= 0).
        as_of: the last day that has happened; None = the latest ``activity_date``.

    Returns:
        Rows in :data:`COHORT_RETENTION_SCHEMA` order and types, sorted by cohort and offset.

    Raises:
        ValueError: ``max_offset`` < 0.
    """
    if max_offset < 0:
        raise ValueError(f"max_offset must be >= 0, got {max_offset}")
    acts = (
        activity.lazy()
        .select(pl.col("user_id").cast(pl.String), pl.col("activity_date").cast(pl.Date))
        .filter(pl.col("user_id").is_not_null())
    )
    if as_of is None:
        latest = acts.select(pl.col("activity_date").max()).collect().item()
        if latest is None:
            return empty_cohort_retention()
        as_of = latest
    acts = acts.filter(pl.col("activity_date") <= as_of).unique()
    per_user = acts.group_by("user_id").agg(
        pl.col("activity_date").min().alias("cohort_date"),
        pl.col("activity_date").max().alias("_last_date"),
    )
    if cohort_dates is not None:
        per_user = per_user.filter(pl.col("cohort_date").is_in(list(cohort_dates)))

    # Bounded: each (user, active day within max_offset of the cohort) counts on its offset.
    bounded = (
        acts.join(per_user.select("user_id", "cohort_date"), on="user_id", how="inner")
        .with_columns(_days("activity_date", "cohort_date").alias("day_offset"))
        .filter(pl.col("day_offset") <= max_offset)
        .group_by("cohort_date", "day_offset")
        .agg(pl.len().cast(pl.Int64).alias("retained_users"))
    )
    # Unbounded: a user is retained on every offset up to their last active day, so count users
    # by their last offset (capped at max_offset) and cumulate from the highest offset down.
    ending = (
        per_user.with_columns(
            _days("_last_date", "cohort_date").clip(upper_bound=max_offset).alias("day_offset")
        )
        .group_by("cohort_date", "day_offset")
        .agg(pl.len().cast(pl.Int64).alias("_ending"))
    )
    sizes = per_user.group_by("cohort_date").agg(pl.len().cast(pl.Int64).alias("cohort_size"))
    offsets = pl.LazyFrame(
        {"day_offset": pl.int_range(0, max_offset + 1, dtype=pl.Int32, eager=True)}
    )
    return (
        sizes.join(offsets, how="cross")
        .join(bounded, on=["cohort_date", "day_offset"], how="left")
        .join(ending, on=["cohort_date", "day_offset"], how="left")
        .with_columns(pl.col("retained_users", "_ending").fill_null(0))
        .sort(["cohort_date", "day_offset"], descending=[False, True])
        .with_columns(
            pl.col("_ending").cum_sum().over("cohort_date").alias("retained_users_unbounded")
        )
        # Computed over every offset first (the cumulative sum needs them), then days that have
        # not happened yet are dropped.
        .filter(pl.col("cohort_date") + pl.duration(days=pl.col("day_offset")) <= as_of)
        .select(
            "cohort_date",
            "day_offset",
            "cohort_size",
            "retained_users",
            (pl.col("retained_users") / pl.col("cohort_size")).alias("retention_rate"),
            "retained_users_unbounded",
            (pl.col("retained_users_unbounded") / pl.col("cohort_size")).alias(
                "retention_rate_unbounded"
            ),
        )
        .sort("cohort_date", "day_offset")
        .collect()
    )


def affected_cohorts(changed_days: Sequence[date], max_offset: int = MAX_OFFSET) -> list[date]:
    """Cohorts whose bounded retention a change of activity on ``changed_days`` can alter.

    Rule: activity on day D is ``day_offset = D - cohort_date`` of its user's cohort, so only
    cohorts D - ``max_offset`` .. D can see it on a bounded row. This is the date-only bound; it
    does not know users, so it cannot see that a late *first* event moves its user out of a
    later cohort, nor the unbounded columns of older cohorts: :func:`cohorts_touched` does.

    Returns:
        The distinct dates, ascending.
    """
    days = {d - timedelta(days=k) for d in changed_days for k in range(max_offset + 1)}
    return sorted(days)


def cohorts_touched(new_activity: pl.DataFrame, previous_activity: pl.DataFrame) -> list[date]:
    """Exactly the cohorts whose rows can change when ``new_activity`` joins the history.

    Rule: a cohort's rows depend only on its members' activity, so only the cohorts of users
    with a genuinely new (user, day) can change: the user's cohort before (membership may be
    lost when the new day is earlier than their first) and after. Both are returned.

    Args:
        new_activity: (``user_id``, ``activity_date``) rows of this refresh (may repeat old ones).
        previous_activity: the history before it (same columns).

    Returns:
        The distinct cohort dates, ascending.
    """
    cols = [pl.col("user_id").cast(pl.String), pl.col("activity_date").cast(pl.Date)]
    previous = previous_activity.lazy().select(cols)
    fresh = (
        new_activity.lazy()
        .select(cols)
        .unique()
        .join(previous, on=["user_id", "activity_date"], how="anti")
    )
    fresh_first = fresh.group_by("user_id").agg(pl.col("activity_date").min().alias("_fresh"))
    old_first = (
        previous.join(fresh_first, on="user_id", how="semi")
        .group_by("user_id")
        .agg(pl.col("activity_date").min().alias("_old"))
    )
    both = fresh_first.join(old_first, on="user_id", how="left").select(
        "_old", pl.min_horizontal("_old", "_fresh").alias("_new")
    )
    dates = pl.concat(
        [both.select(pl.col("_old").alias("d")), both.select(pl.col("_new").alias("d"))]
    )
    return sorted(dates.drop_nulls().unique().collect().to_series().to_list())


def empty_cohort_retention() -> pl.DataFrame:
    """No rows, in :data:`COHORT_RETENTION_SCHEMA` column order and types."""
    frame = pl.from_arrow(COHORT_RETENTION_SCHEMA.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def _days(later: str, earlier: str) -> pl.Expr:
    """Whole days from column ``earlier`` to column ``later`` (dates), as int32."""
    return (pl.col(later) - pl.col(earlier)).dt.total_days().cast(pl.Int32)


__all__ = [
    "ACTIVITY_SCHEMA",
    "COHORT_RETENTION_SCHEMA",
    "MAX_OFFSET",
    "affected_cohorts",
    "cohort_retention",
    "cohorts_touched",
    "empty_cohort_retention",
    "user_activity",
]
