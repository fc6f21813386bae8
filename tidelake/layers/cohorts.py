"""``gold/user_activity`` (hourly) and ``gold/cohort_retention`` (one partition per cohort day).

* ``gold/user_activity``: each user active in an hour once (``user_id``, ``event_date``,
  ``event_hour``), from the five user topics' silver tables; refreshed by stale hour like every
  derived table (:mod:`tidelake.layers.derive`). It is the compact history cohorts need: a
  user's cohort is their first day over *all* history, which no hour-local refresh can know.
* ``gold/cohort_retention``: :func:`tidelake.transform.cohorts.cohort_retention` over every
  user-day of ``gold/user_activity`` as of today (UTC). A refresh computes the whole table (user
  days only: 30 days x 100k users is ~2M rows), compares it with what is stored, and rewrites
  exactly the cohort partitions whose rows differ, in one commit (``overwrite`` with a predicate on
  ``cohort_date``) that records the activity version read as a Delta txn. So a late event on an
  old day rewrites the cohorts it changed (its day's and the 30 before, and a user's old and new
  cohort when it is their first), a new UTC day adds each recent cohort's next ``day_offset``,
  and a refresh with nothing changed commits nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, Transaction, write_deltalake

from tidelake.contracts import TOPICS, TopicContract
from tidelake.ingest.tables import ensure_table
from tidelake.lake import Lake
from tidelake.layers.derive import Built, Derivation, refresh, stale_hours
from tidelake.layers.lineage import watermark_app_id
from tidelake.layers.result import RefreshResult, StaleHours
from tidelake.settings import RefreshSettings
from tidelake.transform.cohorts import (
    COHORT_RETENTION_SCHEMA,
    MAX_OFFSET,
    cohort_retention,
    user_activity,
)
from tidelake.transform.windows import to_arrow

USER_ACTIVITY_PATH = "gold/user_activity"
COHORT_RETENTION_PATH = "gold/cohort_retention"
USER_TOPICS: tuple[TopicContract, ...] = tuple(
    c for c in TOPICS.values() if c.key_field == "user_id"
)
USER_ACTIVITY_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("event_hour", pa.int32(), nullable=False),
    ]
)
COHORT_PARTITION_BY = ("cohort_date",)


def activity_derivation() -> Derivation:
    """The derivation of ``gold/user_activity`` (module docstring)."""

    def build(inputs: Mapping[str, pa.Table], keys: Sequence[str]) -> Built:
        frames = [
            frame.select("user_id", "event_time")
            for t in inputs.values()
            if isinstance(frame := pl.from_arrow(t), pl.DataFrame) and frame.height
        ]
        if not frames:
            return Built(USER_ACTIVITY_SCHEMA.empty_table())
        hourly = (
            pl.concat(frames)
            .filter(pl.col("user_id").is_not_null())
            .select(
                pl.col("user_id").cast(pl.String),
                pl.col("event_time").dt.date().alias("event_date"),
                pl.col("event_time").dt.hour().cast(pl.Int32).alias("event_hour"),
            )
            .unique()
            .sort("event_date", "event_hour", "user_id")
        )
        return Built(to_arrow(hourly, USER_ACTIVITY_SCHEMA))

    return Derivation(
        output=USER_ACTIVITY_PATH,
        inputs=tuple(c.silver_path for c in USER_TOPICS),
        schema=USER_ACTIVITY_SCHEMA,
        description="Each user active in an hour once, from every user topic's silver table.",
        build=build,
        columns=("user_id", "event_time"),
    )


def stale_activity_hours(lake: Lake, now: datetime | None = None) -> StaleHours:
    """Hours of ``gold/user_activity`` whose user-topic events changed."""
    return stale_hours(lake, activity_derivation(), now)


def refresh_user_activity(
    lake: Lake,
    hours: Sequence[str] | None = None,
    *,
    settings: RefreshSettings,
    now: datetime | None = None,
    max_hours: int | None = None,
) -> RefreshResult:
    """Recompute the stale hours of ``gold/user_activity`` in one commit."""
    return refresh(lake, activity_derivation(), hours, settings, now, max_hours)


@dataclass(frozen=True)
class CohortResult:
    """What a cohort refresh rewrote (``version`` None: nothing changed)."""

    cohorts: list[date]
    rows: int
    version: int | None
    activity_version: int | None
    as_of: date


def _stored(lake: Lake) -> pl.DataFrame:
    table = lake.open(COHORT_RETENTION_PATH)
    frame = pl.from_arrow(
        COHORT_RETENTION_SCHEMA.empty_table() if table is None else table.to_pyarrow_table()
    )
    assert isinstance(frame, pl.DataFrame)
    return frame.select(COHORT_RETENTION_SCHEMA.names)


def changed_cohorts(current: pl.DataFrame, stored: pl.DataFrame) -> list[date]:
    """Cohort dates whose rows differ between the two tables (either side)."""
    names = COHORT_RETENTION_SCHEMA.names
    a, b = current.select(names), stored.select(names).cast(dict(current.schema))  # type: ignore[arg-type]
    differ = pl.concat([a.join(b, on=names, how="anti"), b.join(a, on=names, how="anti")])
    return sorted(set(differ["cohort_date"].to_list()))


def cohorts_due(lake: Lake, *, today: date | None = None) -> bool:
    """Whether a cohort refresh would change something: ``gold/user_activity`` moved past the
    version the table last read, or a new day has begun for a cohort of the last 30 days."""
    as_of = today or datetime.now(UTC).date()
    activity = lake.open(USER_ACTIVITY_PATH)
    if activity is None:
        return False
    table = lake.open(COHORT_RETENTION_PATH)
    if table is None:
        return True
    mark = table.transaction_version(watermark_app_id(COHORT_RETENTION_PATH, USER_ACTIVITY_PATH))
    if mark is None or mark < activity.version():
        return True
    stored = _stored(lake)
    if stored.is_empty():
        return False
    recent = stored.filter(pl.col("cohort_date") >= as_of - timedelta(days=MAX_OFFSET))
    if recent.is_empty():
        return False
    covered = recent.select(
        (pl.col("cohort_date") + pl.duration(days=pl.col("day_offset"))).max()
    ).item()
    return bool(covered < as_of)


def refresh_cohorts(lake: Lake, *, today: date | None = None) -> CohortResult:
    """Rewrite the cohorts whose retention changed (module docstring)."""
    as_of = today or datetime.now(UTC).date()
    activity_table = lake.open(USER_ACTIVITY_PATH)
    if activity_table is None:
        return CohortResult([], 0, None, None, as_of)
    read = activity_table.version()
    days = pl.from_arrow(activity_table.to_pyarrow_table(columns=["user_id", "event_date"]))
    assert isinstance(days, pl.DataFrame)
    activity = user_activity(days.rename({"event_date": "activity_date"}))
    current = cohort_retention(activity, as_of=as_of) if activity.height else _stored(lake)[:0]
    changed = changed_cohorts(current, _stored(lake))
    if not changed:
        return CohortResult([], 0, None, read, as_of)
    rows = current.filter(pl.col("cohort_date").is_in(changed))
    table = ensure_table(
        lake,
        COHORT_RETENTION_PATH,
        COHORT_RETENTION_SCHEMA,
        COHORT_PARTITION_BY,
        "Retention of first-activity cohorts (UTC day of a user's first event on any user "
        "topic) on days 0-30, bounded and on-or-after; one partition per cohort_date.",
    )
    listed = ", ".join(f"'{d.isoformat()}'" for d in changed)
    write_deltalake(
        table,
        to_arrow(rows, COHORT_RETENTION_SCHEMA),
        mode="overwrite",
        predicate=f"cohort_date IN ({listed})",
        partition_by=list(COHORT_PARTITION_BY),
        commit_properties=CommitProperties(
            app_transactions=[
                Transaction(watermark_app_id(COHORT_RETENTION_PATH, USER_ACTIVITY_PATH), read)
            ]
        ),
    )
    return CohortResult(changed, rows.height, table.version(), read, as_of)


__all__ = [
    "COHORT_RETENTION_PATH",
    "USER_ACTIVITY_PATH",
    "USER_TOPICS",
    "CohortResult",
    "activity_derivation",
    "changed_cohorts",
    "cohorts_due",
    "refresh_cohorts",
    "refresh_user_activity",
    "stale_activity_hours",
]
