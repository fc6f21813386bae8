"""Windowed gold: per-minute and per-hour counts of events, late events and duplicates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pyarrow as pa

from tidelake.transform.windows import (
    EVENTS_PER_HOUR_SCHEMA,
    EVENTS_PER_MINUTE_SCHEMA,
    events_per_hour,
    events_per_minute,
    to_arrow,
)

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def silver(rows: list[tuple[datetime, str, float, int]]) -> pl.DataFrame:
    """Rows of (event_time, event_type, lateness in seconds, deliveries)."""
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "event_type": [r[1] for r in rows],
            "event_time": [r[0] for r in rows],
            "_ingested_at": [r[0] + timedelta(seconds=r[2]) for r in rows],
            "_deliveries": [r[3] for r in rows],
        },
        schema={
            "event_id": pl.String,
            "event_type": pl.String,
            "event_time": pl.Datetime("us", "UTC"),
            "_ingested_at": pl.Datetime("us", "UTC"),
            "_deliveries": pl.Int32,
        },
    )


def test_each_minute_and_type_counts_events_late_events_and_duplicates() -> None:
    frame = silver(
        [
            (T0 + timedelta(seconds=1), "click", 1, 1),
            (T0 + timedelta(seconds=59.999999), "click", 45, 3),
            (T0 + timedelta(seconds=20), "add_to_cart", 0, 1),
            (T0 + timedelta(minutes=1), "click", 31, 2),
        ]
    )
    out = events_per_minute(frame, "shop.clicks", late_after_seconds=30)
    got = {
        (r["window_start"].minute, r["event_type"]): (
            r["events"],
            r["late_events"],
            r["duplicates"],
        )
        for r in out.iter_rows(named=True)
    }
    assert got == {(0, "click"): (2, 1, 2), (0, "add_to_cart"): (1, 0, 0), (1, "click"): (1, 1, 1)}
    assert set(out["topic"]) == {"shop.clicks"}


def test_a_minute_whose_events_were_all_delivered_twice_counts_each_event_once() -> None:
    frame = silver([(T0, "click", 0, 2), (T0 + timedelta(seconds=5), "click", 0, 2)])
    row = events_per_minute(frame, "shop.clicks", 30).row(0, named=True)
    assert (row["events"], row["duplicates"]) == (2, 2)


def test_the_last_microsecond_of_a_day_and_midnight_fall_in_different_hours_and_dates() -> None:
    before = datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)
    after = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    out = events_per_minute(silver([(before, "click", 0, 1), (after, "click", 0, 1)]), "t", 30)
    rows = [
        (r["window_start"], r["event_date"], r["event_hour"]) for r in out.iter_rows(named=True)
    ]
    assert rows == [
        (datetime(2026, 2, 28, 23, 59, tzinfo=UTC), date(2026, 2, 28), 23),
        (after, date(2026, 3, 1), 0),
    ]
    hourly = events_per_hour(out)
    assert hourly["event_date"].to_list() == [date(2026, 2, 28), date(2026, 3, 1)]
    assert hourly["window_start"].to_list() == [datetime(2026, 2, 28, 23, tzinfo=UTC), after]


def test_hours_sum_their_minutes_per_topic_and_type() -> None:
    frame = silver(
        [
            (T0 + timedelta(minutes=m), "click", 40 if m % 2 else 0, 1 + m % 3)
            for m in range(0, 60, 7)
        ]
    )
    minutes = pl.concat(
        [events_per_minute(frame, "shop.clicks", 30), events_per_minute(frame, "app.x", 30)]
    )
    hours = events_per_hour(minutes)
    assert hours.height == 2
    for row in hours.iter_rows(named=True):
        same = minutes.filter(pl.col("topic") == row["topic"])
        assert row["events"] == same["events"].sum() == frame.height
        assert row["late_events"] == same["late_events"].sum()
        assert row["duplicates"] == same["duplicates"].sum()
        assert row["window_start"] == T0


def test_outputs_convert_to_the_exact_contract_schema() -> None:
    minute = events_per_minute(silver([(T0, "click", 0, 1)]), "shop.clicks", 30)
    table = to_arrow(minute, EVENTS_PER_MINUTE_SCHEMA)
    assert table.schema == EVENTS_PER_MINUTE_SCHEMA
    assert table.schema.field("window_start").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("event_hour").type == pa.int32()
    assert table.schema.field("event_date").type == pa.date32()
    assert (
        to_arrow(events_per_hour(minute), EVENTS_PER_HOUR_SCHEMA).schema == EVENTS_PER_HOUR_SCHEMA
    )


def test_no_silver_rows_give_no_windows_with_the_contract_columns() -> None:
    out = events_per_minute(silver([]), "shop.clicks", 30)
    assert out.height == 0
    assert to_arrow(out, EVENTS_PER_MINUTE_SCHEMA).schema == EVENTS_PER_MINUTE_SCHEMA
    assert events_per_hour(out).columns == EVENTS_PER_HOUR_SCHEMA.names
