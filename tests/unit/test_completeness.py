"""Silver checks per hour (tidelake.quality.completeness) on real Delta tables in a temp lake."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from tidelake.contracts import BRONZE_PARTITION_BY, TOPICS
from tidelake.lake import Lake
from tidelake.ledger import LEDGER_PATH, LEDGER_SCHEMA, LedgerKind
from tidelake.quality.completeness import (
    SOURCE_BRONZE,
    SOURCE_LEDGER,
    covered_minutes,
    hour_bounds,
    silver_completeness,
    silver_matches_bronze,
    silver_unique,
)
from tidelake.settings import LakeSettings

CLICKS = TOPICS["shop.clicks"]
HOUR = "2024-05-01-12:00"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(minute: int, second: int = 0) -> datetime:
    return T0 + timedelta(minutes=minute, seconds=second)


@dataclass
class Hourly:
    """Ledger, bronze and silver rows of shop.clicks, written as the real tables would be."""

    root: Path
    ledger: list[dict[str, Any]] = field(default_factory=list)
    bronze: list[dict[str, Any]] = field(default_factory=list)
    silver: list[dict[str, Any]] = field(default_factory=list)
    offset: int = 0

    def event(
        self,
        event_id: str,
        when: datetime,
        *,
        kind: str = LedgerKind.ON_TIME,
        run_id: str = "run-a",
        ledger: bool = True,
        bronze: int = 1,
        silver: int = 1,
    ) -> None:
        """One event: ledgered (or not), ``bronze`` deliveries, ``silver`` silver rows."""
        if ledger:
            self.ledger.append(
                {
                    "run_id": run_id,
                    "topic": CLICKS.name,
                    "event_id": event_id,
                    "event_type": "click",
                    "event_time": when,
                    "kind": str(kind),
                    "expected_error": None,
                    "partition": 0,
                    "offset": self.offset,
                    "produced_at": when,
                }
            )
        for i in range(bronze):
            self.bronze.append(self._row(event_id, when, delay=5 + i))
        for _ in range(silver):
            self.silver.append(self._row(event_id, when, delay=5) | {"_deliveries": bronze or 1})

    def _row(self, event_id: str, when: datetime, delay: int) -> dict[str, Any]:
        self.offset += 1
        return {
            "event_id": event_id,
            "event_type": "click",
            "event_time": when,
            "user_id": "u1",
            "session_id": "s1",
            "product_id": "p1",
            "element": "button",
            "_topic": CLICKS.name,
            "_partition": 0,
            "_offset": self.offset,
            "_ingested_at": when + timedelta(seconds=delay),
            "event_date": when.date(),
            "event_hour": when.hour,
        }

    def write(self, *, ledger: bool = True, silver: bool = True) -> Lake:
        lake = Lake.from_settings(LakeSettings(uri=str(self.root)))
        if ledger:
            write_deltalake(
                lake.uri(LEDGER_PATH),
                pa.Table.from_pylist(self.ledger, schema=LEDGER_SCHEMA),
                partition_by=["topic"],
                mode="overwrite",
            )
        write_deltalake(
            lake.uri(CLICKS.bronze_path),
            pa.Table.from_pylist(self.bronze, schema=CLICKS.bronze_schema()),
            partition_by=list(BRONZE_PARTITION_BY),
            mode="overwrite",
        )
        if silver:
            write_deltalake(
                lake.uri(CLICKS.silver_path),
                pa.Table.from_pylist(self.silver, schema=CLICKS.silver_schema()),
                partition_by=list(BRONZE_PARTITION_BY),
                mode="overwrite",
            )
        return lake


@pytest.fixture
def hourly(tmp_path: Path) -> Hourly:
    return Hourly(root=tmp_path / "lake")


def a_full_run(h: Hourly, minutes: range = range(11)) -> None:
    """One event per minute of ``minutes``, delivered once, in silver once."""
    for m in minutes:
        h.event(f"e{m:02d}", at(m, 10))


def test_silver_matching_the_ledger_minute_by_minute_passes(hourly: Hourly) -> None:
    a_full_run(hourly)
    hourly.event("late", at(4, 50), kind=LedgerKind.LATE)
    hourly.event("dup", at(6, 1), bronze=2)
    hourly.ledger.append(dict(hourly.ledger[-1]) | {"kind": str(LedgerKind.DUPLICATE)})

    outcome = silver_completeness(hourly.write(), CLICKS, HOUR)

    assert outcome.passed, outcome.description
    meta = outcome.metadata
    assert (meta["source"], meta["minutes_checked"], meta["minutes_not_covered"]) == (
        SOURCE_LEDGER,
        11,
        49,
    )
    assert (meta["expected_events"], meta["silver_rows"], meta["mismatching_minutes"]) == (
        13,
        13,
        0,
    )


def test_a_minute_missing_from_silver_fails_with_its_figures(hourly: Hourly) -> None:
    a_full_run(hourly)
    hourly.event("lost", at(3, 30), silver=0)

    outcome = silver_completeness(hourly.write(), CLICKS, HOUR)

    assert not outcome.passed
    (row,) = outcome.metadata["mismatches"]
    assert row["minute"] == at(3).isoformat()
    assert (row["expected"], row["silver_rows"], row["missing"], row["missing_ids"]) == (
        2,
        1,
        1,
        ["lost"],
    )
    assert "12:03" in outcome.description


def test_an_event_in_silver_that_no_producer_sent_fails_as_extra(hourly: Hourly) -> None:
    a_full_run(hourly)
    hourly.event("phantom", at(5, 5), ledger=False)

    outcome = silver_completeness(hourly.write(), CLICKS, HOUR)

    assert not outcome.passed
    (row,) = outcome.metadata["mismatches"]
    assert (row["extra"], row["extra_ids"]) == (1, ["phantom"])


def test_an_event_twice_in_silver_fails_completeness_and_uniqueness(hourly: Hourly) -> None:
    a_full_run(hourly)
    hourly.event("twice", at(7, 7), silver=2)
    lake = hourly.write()

    complete = silver_completeness(lake, CLICKS, HOUR)
    unique = silver_unique(lake, CLICKS, HOUR)

    assert not complete.passed
    (row,) = complete.metadata["mismatches"]
    assert (row["expected"], row["silver_rows"], row["duplicate_ids"]) == (2, 3, 1)
    assert not unique.passed
    assert unique.metadata["examples"] == [{"event_id": "twice", "rows": 2}]
    assert unique.metadata["extra_rows"] == 1


def test_without_a_ledger_silver_is_accounted_against_distinct_bronze_ids(hourly: Hourly) -> None:
    a_full_run(hourly)
    hourly.event("retried", at(2, 2), bronze=3)
    lake = hourly.write(ledger=False)

    outcome = silver_completeness(lake, CLICKS, HOUR)

    assert outcome.passed, outcome.description
    assert outcome.metadata["source"] == SOURCE_BRONZE
    assert (outcome.metadata["expected_events"], outcome.metadata["silver_rows"]) == (12, 12)


def test_without_a_ledger_a_bronze_event_missing_from_silver_fails(hourly: Hourly) -> None:
    a_full_run(hourly)
    hourly.event("dropped", at(9, 9), silver=0)

    outcome = silver_completeness(hourly.write(ledger=False), CLICKS, HOUR)

    assert not outcome.passed
    assert outcome.metadata["source"] == SOURCE_BRONZE
    assert outcome.metadata["mismatches"][0]["missing_ids"] == ["dropped"]


def test_a_minute_the_ledger_does_not_cover_is_not_checked(hourly: Hourly) -> None:
    a_full_run(hourly)  # the run spans 12:00-12:10
    hourly.event("outsider", at(50), ledger=False)  # from a producer that keeps no ledger

    outcome = silver_completeness(hourly.write(), CLICKS, HOUR)

    assert outcome.passed, outcome.description
    assert outcome.metadata["minutes_checked"] == 11


def test_a_ledger_without_rows_in_the_hour_falls_back_to_bronze(hourly: Hourly) -> None:
    a_full_run(hourly)
    for row in hourly.ledger:
        row["event_time"] -= timedelta(hours=5)
    hourly.event("unsilvered", at(20), ledger=False, silver=0)

    outcome = silver_completeness(hourly.write(), CLICKS, HOUR)

    assert outcome.metadata["source"] == SOURCE_BRONZE
    assert not outcome.passed


def test_only_the_hours_partitions_count(hourly: Hourly) -> None:
    a_full_run(hourly)
    hourly.event("next-hour", at(75), ledger=False, bronze=0, silver=2)
    hourly.event("next-hour-lost", at(80), silver=0)

    lake = hourly.write()

    assert silver_completeness(lake, CLICKS, HOUR).passed
    assert silver_unique(lake, CLICKS, HOUR).passed
    assert silver_matches_bronze(lake, CLICKS, HOUR).passed
    assert not silver_unique(lake, CLICKS, "2024-05-01-13:00").passed


def test_no_silver_table_fails_an_hour_with_events_and_passes_an_empty_one(
    hourly: Hourly,
) -> None:
    a_full_run(hourly)
    lake = hourly.write(silver=False)

    outcome = silver_completeness(lake, CLICKS, HOUR)

    assert not outcome.passed
    assert outcome.metadata["silver_exists"] is False
    assert silver_completeness(lake, CLICKS, "2024-05-01-15:00").passed
    assert silver_unique(lake, CLICKS, HOUR).passed


def test_silver_matches_bronze_counts_each_retried_event_once(hourly: Hourly) -> None:
    a_full_run(hourly, range(3))
    hourly.event("retried", at(1, 1), bronze=2)

    outcome = silver_matches_bronze(hourly.write(), CLICKS, HOUR)

    assert outcome.passed, outcome.description
    meta = outcome.metadata
    assert (meta["bronze_rows"], meta["bronze_event_ids"], meta["silver_rows"]) == (5, 4, 4)


@pytest.mark.parametrize(
    ("bronze", "silver", "figures"),
    [(1, 0, (1, 0)), (0, 1, (0, 1)), (1, 2, (0, 0))],
    ids=["lost", "invented", "doubled"],
)
def test_silver_matches_bronze_fails_on_a_lost_invented_or_doubled_event(
    hourly: Hourly, bronze: int, silver: int, figures: tuple[int, int]
) -> None:
    a_full_run(hourly, range(3))
    hourly.event("odd", at(2, 2), bronze=bronze, silver=silver)

    outcome = silver_matches_bronze(hourly.write(), CLICKS, HOUR)

    assert not outcome.passed
    assert (outcome.metadata["missing"], outcome.metadata["extra"]) == figures


def test_covered_minutes_are_the_union_of_each_runs_span() -> None:
    ledger = pl.DataFrame(
        {
            "run_id": ["a", "a", "b", "b"],
            "event_time": [at(0, 30), at(2, 59), at(10), at(11, 1)],
        }
    )

    minutes = covered_minutes(ledger)

    assert minutes == [at(0), at(1), at(2), at(10), at(11)]


def test_an_hour_key_with_minutes_is_rejected() -> None:
    assert hour_bounds(HOUR) == (T0, T0 + timedelta(hours=1))
    with pytest.raises(ValueError, match="minutes must be 00"):
        hour_bounds("2024-05-01-12:30")
