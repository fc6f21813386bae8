"""Derivations that read context hours before the hours they write, and whose inputs change later
output hours (trailing windows, cross-topic sequence rules)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from test_layers import CLICKS, SETTINGS, Feed

from tidelake.lake import Lake
from tidelake.layers.derive import Built, Derivation, refresh, stale_hours
from tidelake.layers.hours import hour_start, key_of, shifted
from tidelake.settings import LakeSettings

H09 = datetime(2026, 3, 1, 9, tzinfo=UTC)
H10 = datetime(2026, 3, 1, 10, tzinfo=UTC)
H11 = datetime(2026, 3, 1, 11, tzinfo=UTC)
NOW = datetime(2026, 3, 1, 11, 30, tzinfo=UTC)
K09, K10, K11, K12 = (key_of(h.date(), h.hour) for h in (H09, H10, H11, H11 + timedelta(hours=1)))

SCHEMA = pa.schema(
    [
        pa.field("hour", pa.string()),
        pa.field("own", pa.int64()),
        pa.field("with_previous", pa.int64()),
        pa.field("event_date", pa.date32()),
        pa.field("event_hour", pa.int32()),
    ]
)
SEEN: list[list[str]] = []


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))


@pytest.fixture
def feed(lake: Lake) -> Feed:
    return Feed(lake)


def build(inputs: Mapping[str, pa.Table], keys: Sequence[str]) -> Built:
    """Per hour: its clicks and its clicks plus the previous hour's (a trailing window)."""
    frame = pl.DataFrame(inputs[CLICKS.bronze_path])
    hours = (
        frame.select(pl.col("event_time").dt.truncate("1h").alias("h"))
        if frame.height
        else pl.DataFrame({"h": []})
    )
    SEEN.append(sorted({key_of(h.date(), h.hour) for h in hours["h"].to_list()}))
    rows = []
    for key in keys:
        start = hour_start(key)
        own = sum(1 for h in hours["h"].to_list() if h == start)
        previous = sum(1 for h in hours["h"].to_list() if h == start - timedelta(hours=1))
        rows.append(
            {
                "hour": key,
                "own": own,
                "with_previous": own + previous,
                "event_date": start.date(),
                "event_hour": start.hour,
            }
        )
    return Built(pa.Table.from_pylist(rows, schema=SCHEMA))


DERIVATION = Derivation(
    output="gold/trailing_test",
    inputs=(CLICKS.bronze_path,),
    schema=SCHEMA,
    description="test",
    build=build,
    columns=("event_time",),
    context_hours={CLICKS.bronze_path: 1},
    affects_hours={CLICKS.bronze_path: 1},
)


def rows(lake: Lake) -> dict[str, tuple[int, int]]:
    table = lake.open(DERIVATION.output)
    assert table is not None
    return {r["hour"]: (r["own"], r["with_previous"]) for r in table.to_pyarrow_table().to_pylist()}


def test_shifted_moves_hour_keys_across_days() -> None:
    assert shifted("2026-03-01-23:00", 1) == "2026-03-02-00:00"
    assert shifted("2026-03-02-00:00", -1) == "2026-03-01-23:00"


def test_a_touched_hour_makes_the_next_hour_stale_but_never_past_the_open_hour(
    feed: Feed, lake: Lake
) -> None:
    feed.click(H10 + timedelta(minutes=50))
    feed.click(H11 + timedelta(minutes=5))
    feed.ingest()

    assert stale_hours(lake, DERIVATION, now=NOW).hours == [K10, K11], "K12 is not open yet"
    later = NOW + timedelta(hours=1)
    assert stale_hours(lake, DERIVATION, now=later).hours == [K10, K11, K12]


def test_a_refresh_reads_the_context_hours_but_writes_only_its_own(feed: Feed, lake: Lake) -> None:
    feed.click(H09 + timedelta(minutes=30))
    feed.click(H10 + timedelta(minutes=50))
    feed.click(H11 + timedelta(minutes=5))
    feed.ingest()
    SEEN.clear()

    result = refresh(lake, DERIVATION, [K11], SETTINGS, now=NOW)

    assert result.hour_keys == [K11]
    assert SEEN == [[K10, K11]], "the hour before was read as context"
    assert rows(lake) == {K11: (1, 2)}


def test_a_late_event_recomputes_its_hour_and_the_next_from_context(feed: Feed, lake: Lake) -> None:
    feed.click(H10 + timedelta(minutes=10))
    feed.click(H11 + timedelta(minutes=10))
    feed.ingest()
    refresh(lake, DERIVATION, None, SETTINGS, now=NOW)
    assert rows(lake) == {K10: (1, 1), K11: (1, 2)}

    feed.click(H10 + timedelta(minutes=20))  # late, for hour 10
    feed.ingest()

    assert stale_hours(lake, DERIVATION, now=NOW).hours == [K10, K11]
    refresh(lake, DERIVATION, None, SETTINGS, now=NOW)
    assert rows(lake) == {K10: (2, 2), K11: (1, 3)}
    assert stale_hours(lake, DERIVATION, now=NOW).hours == []
