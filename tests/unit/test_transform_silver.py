"""Silver deduplication: the first delivery of each event_id wins, duplicates are counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from tidelake.transform.silver import dedupe_first_delivery, late_expr

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def bronze(rows: list[tuple[str, int, int, int]]) -> pl.DataFrame:
    """Rows of (event_id, seconds after T0 ingested, partition, offset)."""
    return pl.DataFrame(
        {
            "event_id": [r[0] for r in rows],
            "event_type": ["click"] * len(rows),
            "event_time": [T0] * len(rows),
            "_partition": [r[2] for r in rows],
            "_offset": [r[3] for r in rows],
            "_ingested_at": [T0 + timedelta(seconds=r[1]) for r in rows],
            "event_date": [T0.date()] * len(rows),
            "event_hour": [T0.hour] * len(rows),
        },
        schema_overrides={"_partition": pl.Int32, "event_hour": pl.Int32},
    )


def test_the_earliest_ingested_delivery_wins_whatever_its_position_in_the_frame() -> None:
    frame = bronze([("a", 9, 0, 1), ("a", 3, 2, 7), ("a", 5, 1, 0), ("b", 1, 0, 2)])
    rows, removed = dedupe_first_delivery(frame)
    assert removed == 2
    first = rows.filter(pl.col("event_id") == "a").row(0, named=True)
    assert (first["_partition"], first["_offset"], first["_deliveries"]) == (2, 7, 3)
    assert rows.filter(pl.col("event_id") == "b")["_deliveries"].to_list() == [1]


def test_ties_on_ingestion_time_go_to_the_smaller_partition_then_the_smaller_offset() -> None:
    frame = bronze([("a", 0, 1, 0), ("a", 0, 0, 9), ("a", 0, 0, 4), ("b", 0, 2, 5), ("b", 0, 2, 3)])
    rows, removed = dedupe_first_delivery(frame)
    assert removed == 3
    got = {r["event_id"]: (r["_partition"], r["_offset"]) for r in rows.iter_rows(named=True)}
    assert got == {"a": (0, 4), "b": (2, 3)}


def test_columns_keep_bronze_order_and_deliveries_is_a_non_null_int32_last() -> None:
    frame = bronze([("a", 0, 0, 0), ("a", 1, 0, 1)])
    rows, _ = dedupe_first_delivery(frame)
    assert rows.columns == [*frame.columns, "_deliveries"]
    assert rows.schema["_deliveries"] == pl.Int32
    assert rows["_deliveries"].null_count() == 0


def test_an_empty_frame_gives_an_empty_frame_with_the_deliveries_column() -> None:
    rows, removed = dedupe_first_delivery(bronze([]))
    assert (rows.height, removed) == (0, 0)
    assert rows.columns[-1] == "_deliveries"


def test_a_frame_that_already_has_deliveries_is_deduplicated_afresh() -> None:
    # Re-deduplicating silver (e.g. a re-read) must not keep a stale _deliveries column.
    once, _ = dedupe_first_delivery(bronze([("a", 0, 0, 0), ("a", 1, 0, 1)]))
    twice, removed = dedupe_first_delivery(once)
    assert removed == 0 and twice.columns == once.columns
    assert twice["_deliveries"].to_list() == [1]


def test_an_event_is_late_only_when_lateness_exceeds_the_threshold() -> None:
    frame = bronze([("a", 30, 0, 0), ("b", 31, 0, 1)])
    late = frame.select(late_expr(30.0).alias("late"))["late"].to_list()
    assert late == [False, True]
