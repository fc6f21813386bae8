"""Silver and windowed gold refreshes on real Delta tables, fed by the real ingest engine.

Bronze is written by :class:`tidelake.ingest.IngestEngine` from an in-memory Kafka, so the
annotations the refreshes read (``stats["hours"]``) are the ones production writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake

import tidelake.layers.derive as derive
from tidelake.contracts import TOPICS, TopicContract
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import IngestEngine
from tidelake.lake import Lake
from tidelake.layers import (
    EVENTS_PER_HOUR_PATH,
    EVENTS_PER_MINUTE_PATH,
    refresh_events_per_hour,
    refresh_events_per_minute,
    refresh_silver,
    stale_gold_hours,
    stale_hourly_gold_hours,
    stale_silver_hours,
    watermark_app_id,
)
from tidelake.layers.hours import in_partition_space, overwrite_predicate, parse_hour
from tidelake.layers.lineage import commits_after, hours_of_commit
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings, RefreshSettings

CLICKS = TOPICS["shop.clicks"]
SEARCHES = TOPICS["shop.searches"]
SETTINGS = RefreshSettings(partitions_start="2025-01-01", late_after_seconds=30.0)
H10 = datetime(2026, 3, 1, 10, tzinfo=UTC)
H11 = datetime(2026, 3, 1, 11, tzinfo=UTC)
K10, K11 = "2026-03-01-10:00", "2026-03-01-11:00"


class Feed:
    """Produce events to the fake Kafka and ingest them into bronze with the real engine."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.kafka = FakeKafka()
        for contract in (CLICKS, SEARCHES):
            self.kafka.create_topic(contract.name, partitions=2)
        self.engine = IngestEngine(
            lake,
            KafkaSettings(consumer_group="layers"),
            IngestSettings(quiet_seconds=0.02),
            consumer_factory=self.kafka.consumer_factory,
        )

    def click(
        self, at: datetime, event_id: str | None = None, event_type: str = "click", key: str = "u1"
    ) -> str:
        event_id = event_id or str(uuid.uuid4())
        value = {
            "event_id": event_id,
            "event_type": event_type,
            "event_time": at.isoformat(),
            "user_id": key,
            "session_id": "s1",
            "product_id": "p1",
            "element": "buy",
        }
        self.kafka.produce(CLICKS.name, orjson.dumps(value), key=key.encode())
        return event_id

    def search(self, at: datetime) -> None:
        value = {
            "event_id": str(uuid.uuid4()),
            "event_type": "search",
            "event_time": at.isoformat(),
            "user_id": "u1",
            "session_id": "s1",
            "query": "shoes",
            "results_count": 3,
        }
        self.kafka.produce(SEARCHES.name, orjson.dumps(value), key=b"u1")

    def ingest(self, contract: TopicContract = CLICKS) -> None:
        self.engine.ingest_topic(contract)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))


@pytest.fixture
def feed(lake: Lake) -> Feed:
    return Feed(lake)


def table(lake: Lake, path: str) -> pl.DataFrame:
    dt = lake.open(path)
    assert dt is not None, path
    return pl.DataFrame(dt.to_pyarrow_table())


def version(lake: Lake, path: str) -> int:
    dt = lake.open(path)
    assert dt is not None, path
    return dt.version()


def hour_files(lake: Lake, path: str, key: str) -> set[str]:
    dt = lake.open(path)
    assert dt is not None
    day, hour = parse_hour(key)
    return set(
        dt.file_uris(file_pruning_predicate=[("event_date", "=", day), ("event_hour", "=", hour)])
    )


def refresh_all(lake: Lake) -> None:
    for contract in (CLICKS, SEARCHES):
        refresh_silver(lake, contract, settings=SETTINGS)
    refresh_events_per_minute(lake, [CLICKS, SEARCHES], settings=SETTINGS)
    refresh_events_per_hour(lake, settings=SETTINGS)


# -- silver ---------------------------------------------------------------------------------


def test_bronze_commits_name_the_hours_of_their_rows(feed: Feed, lake: Lake) -> None:
    feed.click(H10 + timedelta(minutes=5))
    feed.click(H11 + timedelta(minutes=59, seconds=59))
    feed.ingest()
    bronze = lake.open(CLICKS.bronze_path)
    assert bronze is not None
    (_, info), *_ = reversed(commits_after(bronze, 0))
    assert hours_of_commit(info) == {K10, K11}


def test_silver_keeps_one_row_per_event_and_counts_the_duplicates_removed(
    feed: Feed, lake: Lake
) -> None:
    twice = feed.click(H10 + timedelta(minutes=1), key="a")
    feed.click(H10 + timedelta(minutes=1), event_id=twice, key="b")  # a producer retry
    feed.click(H10 + timedelta(minutes=2))
    feed.ingest()
    result = refresh_silver(lake, CLICKS, settings=SETTINGS)
    assert result.complete and result.version == 1 and result.rows == 2
    (hour,) = result.hours
    assert hour.hour == K10
    assert hour.details == {
        "bronze_rows": 3,
        "bronze_event_ids": 2,
        "duplicates_removed": 1,
        "late": 2,  # these event times are long past: every event arrives late
    }
    silver = table(lake, CLICKS.silver_path)
    assert silver["event_id"].is_unique().all()
    assert dict(zip(silver["event_id"], silver["_deliveries"], strict=True))[twice] == 2
    schema = lake.open(CLICKS.silver_path).schema().to_arrow()  # type: ignore[union-attr]
    assert pa.schema(schema) == CLICKS.silver_schema()


def test_rerunning_a_refresh_makes_no_commit(feed: Feed, lake: Lake) -> None:
    feed.click(H10)
    feed.ingest()
    refresh_all(lake)
    versions = {p: version(lake, p) for p in (CLICKS.silver_path, EVENTS_PER_MINUTE_PATH)}
    again = refresh_silver(lake, CLICKS, settings=SETTINGS)
    gold = refresh_events_per_minute(lake, [CLICKS, SEARCHES], settings=SETTINGS)
    hourly = refresh_events_per_hour(lake, settings=SETTINGS)
    for result in (again, gold, hourly):
        assert (result.version, result.hours, result.complete) == (None, [], True)
    assert versions == {p: version(lake, p) for p in versions}
    assert stale_silver_hours(lake, CLICKS).hours == []
    assert stale_gold_hours(lake, [CLICKS, SEARCHES]).hours == []
    assert stale_hourly_gold_hours(lake).hours == []


def test_a_late_event_for_an_old_hour_makes_only_that_hour_stale_and_rewritten(
    feed: Feed, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed.click(H10 + timedelta(minutes=3))
    feed.click(H11 + timedelta(minutes=3))
    feed.ingest()
    refresh_silver(lake, CLICKS, settings=SETTINGS)
    eleven = hour_files(lake, CLICKS.silver_path, K11)

    feed.click(H10 + timedelta(minutes=7))  # late: lands in the 10:00 partition
    feed.ingest()
    stale = stale_silver_hours(lake, CLICKS)
    assert stale.hours == [K10]
    assert stale.input_versions == {CLICKS.bronze_path: version(lake, CLICKS.bronze_path)}
    real_read = derive.read_hours
    read: list[list[str]] = []

    def recording(
        dt: DeltaTable, keys: Sequence[str], columns: Sequence[str] | None = None
    ) -> pa.Table:
        read.append(list(keys))
        return real_read(dt, keys, columns)

    monkeypatch.setattr(derive, "read_hours", recording)
    result = refresh_silver(lake, CLICKS, settings=SETTINGS)
    assert read == [[K10]]  # only the touched hour's bronze partition was read
    rows = real_read(lake.open(CLICKS.bronze_path), [K10])  # type: ignore[arg-type]
    assert rows.num_rows == 2 and set(rows.column("event_hour").to_pylist()) == {10}
    assert [h.hour for h in result.hours] == [K10] and result.hours[0].rows == 2
    assert hour_files(lake, CLICKS.silver_path, K11) == eleven  # the 11:00 files were not touched
    output = lake.open(CLICKS.silver_path)
    assert output is not None
    assert output.transaction_version(watermark_app_id(CLICKS.silver_path, CLICKS.bronze_path)) == (
        version(lake, CLICKS.bronze_path)
    )


def test_a_delivery_of_an_event_already_in_silver_only_raises_its_duplicate_count(
    feed: Feed, lake: Lake
) -> None:
    at = H10 + timedelta(minutes=4)
    event = feed.click(at)
    feed.ingest()
    refresh_all(lake)
    feed.click(at, event_id=event, key="other")  # a retry arriving in a later batch
    feed.ingest()
    silver = refresh_silver(lake, CLICKS, settings=SETTINGS)
    assert silver.hours[0].details["duplicates_removed"] == 1 and silver.rows == 1
    refresh_events_per_minute(lake, [CLICKS], settings=SETTINGS)
    (row,) = table(lake, EVENTS_PER_MINUTE_PATH).iter_rows(named=True)
    assert (row["events"], row["duplicates"]) == (1, 1)


def test_an_hour_emptied_in_the_input_is_emptied_in_every_layer(feed: Feed, lake: Lake) -> None:
    feed.click(H10)
    feed.click(H11)
    feed.ingest()
    refresh_all(lake)
    bronze = lake.open(CLICKS.bronze_path)
    assert bronze is not None
    # A commit that names no hours (another tool's DELETE): every hour must be re-derived.
    bronze.delete("event_hour = 10")
    assert set(stale_silver_hours(lake, CLICKS).hours) == {K10, K11}
    silver = refresh_silver(lake, CLICKS, settings=SETTINGS)
    assert {h.hour: h.rows for h in silver.hours} == {K10: 0, K11: 1}
    assert table(lake, CLICKS.silver_path)["event_hour"].to_list() == [11]
    gold = refresh_events_per_minute(lake, [CLICKS, SEARCHES], settings=SETTINGS)
    assert {h.hour: h.rows for h in gold.hours} == {K10: 0, K11: 1}
    refresh_events_per_hour(lake, settings=SETTINGS)
    for path in (EVENTS_PER_MINUTE_PATH, EVENTS_PER_HOUR_PATH):
        assert table(lake, path)["event_hour"].to_list() == [11]


def test_the_last_microsecond_of_a_day_and_midnight_land_in_their_own_utc_hours(
    feed: Feed, lake: Lake
) -> None:
    before = datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)
    midnight = datetime(2026, 3, 1, tzinfo=UTC)
    feed.click(before)
    feed.click(midnight)
    feed.ingest()
    silver = refresh_silver(lake, CLICKS, settings=SETTINGS)
    assert [h.hour for h in silver.hours] == ["2026-02-28-23:00", "2026-03-01-00:00"]
    refresh_events_per_minute(lake, [CLICKS], settings=SETTINGS)
    gold = table(lake, EVENTS_PER_MINUTE_PATH).sort("window_start")
    assert gold.select("window_start", "event_date", "event_hour", "events").rows() == [
        (datetime(2026, 2, 28, 23, 59, tzinfo=UTC), date(2026, 2, 28), 23, 1),
        (midnight, date(2026, 3, 1), 0, 1),
    ]


# -- the hours= filter and the watermark ----------------------------------------------------


def test_a_partial_refresh_leaves_the_watermark_until_no_stale_hour_remains(
    feed: Feed, lake: Lake
) -> None:
    feed.click(H10)
    feed.click(H11)
    feed.ingest()
    app_id = watermark_app_id(CLICKS.silver_path, CLICKS.bronze_path)
    first = refresh_silver(lake, CLICKS, [K10], settings=SETTINGS)
    assert [h.hour for h in first.hours] == [K10] and not first.complete
    assert lake.open(CLICKS.silver_path).transaction_version(app_id) is None  # type: ignore[union-attr]
    # 10:00 was refreshed from the current bronze: only 11:00 is left.
    assert stale_silver_hours(lake, CLICKS).hours == [K11]
    assert refresh_silver(lake, CLICKS, ["2026-03-01-12:00"], settings=SETTINGS).version is None
    second = refresh_silver(lake, CLICKS, [K10, K11], settings=SETTINGS)
    assert [h.hour for h in second.hours] == [K11] and second.complete
    assert lake.open(CLICKS.silver_path).transaction_version(app_id) == version(  # type: ignore[union-attr]
        lake, CLICKS.bronze_path
    )
    assert stale_silver_hours(lake, CLICKS).hours == []


def test_an_hour_refreshed_partially_is_stale_again_when_new_rows_arrive_for_it(
    feed: Feed, lake: Lake
) -> None:
    feed.click(H10)
    feed.click(H11)
    feed.ingest()
    refresh_silver(lake, CLICKS, [K10], settings=SETTINGS)
    feed.click(H10 + timedelta(minutes=30))
    feed.ingest()
    assert stale_silver_hours(lake, CLICKS).hours == [K10, K11]
    result = refresh_silver(lake, CLICKS, settings=SETTINGS)
    assert {h.hour: h.rows for h in result.hours} == {K10: 2, K11: 1} and result.complete


def test_events_before_partitions_start_still_reach_silver_and_gold(feed: Feed, lake: Lake) -> None:
    old = datetime(2024, 6, 1, 8, 30, tzinfo=UTC)
    feed.click(old)
    feed.click(H10)
    feed.ingest()
    # A partition run for 10:00 also takes the hour no partition run could ever request.
    result = refresh_silver(lake, CLICKS, [K10], settings=SETTINGS)
    assert [h.hour for h in result.hours] == ["2024-06-01-08:00", K10] and result.complete
    gold = refresh_events_per_minute(lake, [CLICKS], [K10], settings=SETTINGS)
    assert "2024-06-01-08:00" in [h.hour for h in gold.hours]
    refresh_events_per_hour(lake, [K10], settings=SETTINGS)
    hourly = table(lake, EVENTS_PER_HOUR_PATH)
    assert datetime(2024, 6, 1, 8, tzinfo=UTC) in hourly["window_start"].to_list()


def test_the_partition_space_runs_from_partitions_start_to_the_open_hour() -> None:
    now = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    assert not in_partition_space("2024-12-31-23:00", "2025-01-01", now)
    assert in_partition_space("2025-01-01-00:00", "2025-01-01", now)
    assert in_partition_space("2026-03-01-10:00", "2025-01-01", now)
    assert not in_partition_space("2026-03-01-11:00", "2025-01-01", now)


def test_the_overwrite_predicate_names_exactly_the_hours_grouped_by_day() -> None:
    whole_day = [f"2026-03-02-{h:02d}:00" for h in range(24)]
    predicate = overwrite_predicate([K11, K10, "2026-03-03-05:00", *whole_day])
    assert predicate == (
        "(event_date = '2026-03-01' AND event_hour IN (10, 11)) OR (event_date = '2026-03-02') "
        "OR (event_date = '2026-03-03' AND event_hour = 5)"
    )


# -- crashes and races ----------------------------------------------------------------------


def test_a_crash_before_the_commit_leaves_the_output_as_it_was_and_a_retry_counts_once(
    feed: Feed, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed.click(H10)
    dup = feed.click(H10 + timedelta(seconds=5), key="a")
    feed.click(H10 + timedelta(seconds=5), event_id=dup, key="b")
    feed.ingest()
    refresh_silver(lake, CLICKS, settings=SETTINGS)
    refresh_events_per_minute(lake, [CLICKS], settings=SETTINGS)
    before_version = version(lake, EVENTS_PER_MINUTE_PATH)
    before = table(lake, EVENTS_PER_MINUTE_PATH)

    feed.click(H10 + timedelta(seconds=9))
    feed.ingest()
    refresh_silver(lake, CLICKS, settings=SETTINGS)
    real = derive.write_deltalake
    calls: list[int] = []

    def crash_once(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the process died between reading and committing")
        real(*args, **kwargs)

    monkeypatch.setattr(derive, "write_deltalake", crash_once)
    with pytest.raises(OSError):
        refresh_events_per_minute(lake, [CLICKS], settings=SETTINGS)
    assert version(lake, EVENTS_PER_MINUTE_PATH) == before_version
    assert table(lake, EVENTS_PER_MINUTE_PATH).equals(before)
    assert stale_gold_hours(lake, [CLICKS]).hours == [K10]

    retry = refresh_events_per_minute(lake, [CLICKS], settings=SETTINGS)
    assert retry.complete and retry.hours[0].details == {
        "events": 3,
        "duplicates": 1,
        "late_events": 3,
    }
    (row,) = table(lake, EVENTS_PER_MINUTE_PATH).iter_rows(named=True)
    assert (row["events"], row["duplicates"]) == (3, 1)
    assert refresh_events_per_minute(lake, [CLICKS], settings=SETTINGS).version is None


def test_a_refresh_that_loses_a_race_rereads_and_never_moves_the_watermark_back(
    feed: Feed, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed.click(H10)
    feed.ingest()
    real = derive.write_deltalake
    raced: list[int] = []

    def racing(*args: Any, **kwargs: Any) -> None:
        if not raced:
            raced.append(1)
            # Meanwhile: a new bronze commit, and another refresh that reads it and commits.
            feed.click(H11)
            feed.ingest()
            monkeypatch.setattr(derive, "write_deltalake", real)
            refresh_silver(lake, CLICKS, settings=SETTINGS)
            monkeypatch.setattr(derive, "write_deltalake", racing)
        real(*args, **kwargs)

    monkeypatch.setattr(derive, "write_deltalake", racing)
    refresh_silver(lake, CLICKS, settings=SETTINGS)
    output = lake.open(CLICKS.silver_path)
    assert output is not None
    app_id = watermark_app_id(CLICKS.silver_path, CLICKS.bronze_path)
    assert output.transaction_version(app_id) == version(lake, CLICKS.bronze_path)
    assert sorted(table(lake, CLICKS.silver_path)["event_hour"].to_list()) == [10, 11]
    assert stale_silver_hours(lake, CLICKS).hours == []


# -- gold -----------------------------------------------------------------------------------


def test_gold_per_minute_events_equal_silver_counts_per_minute_for_every_topic(
    feed: Feed, lake: Lake
) -> None:
    for i in range(40):
        at = H10 + timedelta(minutes=i * 3 % 90, seconds=i)
        event = feed.click(at, event_type="add_to_cart" if i % 4 == 0 else "click", key=f"u{i}")
        if i % 5 == 0:
            feed.click(at, event_id=event, key=f"v{i}")
        feed.search(at)
    feed.ingest(CLICKS)
    feed.ingest(SEARCHES)
    refresh_all(lake)
    gold = table(lake, EVENTS_PER_MINUTE_PATH)
    for contract in (CLICKS, SEARCHES):
        silver = table(lake, contract.silver_path)
        expected = (
            silver.group_by(
                pl.col("event_time").dt.truncate("1m").alias("window_start"), "event_type"
            )
            .agg(pl.len().cast(pl.Int64).alias("events"))
            .sort("window_start", "event_type")
        )
        got = (
            gold.filter(pl.col("topic") == contract.name)
            .select("window_start", "event_type", "events")
            .sort("window_start", "event_type")
        )
        assert got.equals(expected)
    duplicates = gold.filter(pl.col("topic") == CLICKS.name)["duplicates"].sum()
    assert duplicates == 8
    hourly = table(lake, EVENTS_PER_HOUR_PATH)
    assert hourly["events"].sum() == gold["events"].sum() == 80
    assert sorted(set(hourly["event_hour"].to_list())) == [10, 11]
    schema = lake.open(EVENTS_PER_MINUTE_PATH).schema().to_arrow()  # type: ignore[union-attr]
    assert pa.schema(schema).names == [
        "topic", "event_type", "window_start", "events", "late_events", "duplicates",
        "event_date", "event_hour",
    ]  # fmt: skip


def test_a_silver_table_that_appears_later_is_derived_in_full(feed: Feed, lake: Lake) -> None:
    feed.click(H10)
    feed.ingest(CLICKS)
    refresh_silver(lake, CLICKS, settings=SETTINGS)
    refresh_events_per_minute(lake, [CLICKS, SEARCHES], settings=SETTINGS)
    feed.search(H11)
    feed.ingest(SEARCHES)
    refresh_silver(lake, SEARCHES, settings=SETTINGS)
    stale = stale_gold_hours(lake, [CLICKS, SEARCHES])
    assert stale.hours == [K11]
    assert set(stale.input_versions) == {CLICKS.silver_path, SEARCHES.silver_path}
    refresh_events_per_minute(lake, [CLICKS, SEARCHES], settings=SETTINGS)
    assert set(table(lake, EVENTS_PER_MINUTE_PATH)["topic"]) == {CLICKS.name, SEARCHES.name}


# -- lineage --------------------------------------------------------------------------------


@pytest.fixture
def numbered(tmp_path: Path) -> Iterator[str]:
    uri = str(tmp_path / "numbered")
    for i in range(5):
        write_deltalake(
            uri,
            pa.table({"x": [i]}),
            mode="append",
            commit_properties=CommitProperties(custom_metadata={"i": str(i)}),
        )
    yield uri


def test_commits_after_numbers_commits_right_even_when_newer_ones_landed_since_loading(
    numbered: str,
) -> None:
    # Regression: deltalake 1.6's history() starts at the newest commit in storage but numbers
    # entries from the loaded version, so commits made after loading shifted every label.
    pinned = DeltaTable(numbered)
    for i in range(5, 8):
        write_deltalake(
            numbered,
            pa.table({"x": [i]}),
            mode="append",
            commit_properties=CommitProperties(custom_metadata={"i": str(i)}),
        )
    got = [(v, info["i"]) for v, info in commits_after(pinned, 1)]
    assert got == [(2, "2"), (3, "3"), (4, "4")]
    assert commits_after(pinned, 4) == []
    assert [v for v, _ in commits_after(DeltaTable(numbered, version=2), -1)] == [0, 1, 2]


def test_commits_without_hours_are_attributed_conservatively() -> None:
    assert hours_of_commit({"operation": "OPTIMIZE"}) == set()
    assert (
        hours_of_commit({"operation": "DELETE", "operationMetrics": {"num_removed_files": 1}})
        is None
    )
    assert hours_of_commit({"tidelake": '{"kind":"accept_gap","stats":{}}'}) == set()
    assert hours_of_commit({"tidelake": '{"kind":"ingest","stats":{"rows":0}}'}) == set()
    assert hours_of_commit({"tidelake": '{"kind":"ingest","stats":{"rows":3}}'}) is None
    assert hours_of_commit({"tidelake": '{"kind":"derive","hours":["2026-03-01-10:00"]}'}) == {K10}


def test_gold_reads_only_the_silver_columns_its_windows_use(
    feed: Feed, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidelake.layers.gold import SILVER_WINDOW_COLUMNS

    feed.click(H10 + timedelta(minutes=1))
    feed.ingest()
    refresh_silver(lake, CLICKS, settings=SETTINGS)
    real_read = derive.read_hours
    asked: list[Sequence[str] | None] = []

    def recording(
        dt: DeltaTable, keys: Sequence[str], columns: Sequence[str] | None = None
    ) -> pa.Table:
        asked.append(columns)
        return real_read(dt, keys, columns)

    monkeypatch.setattr(derive, "read_hours", recording)
    result = refresh_events_per_minute(lake, [CLICKS], settings=SETTINGS)

    assert result.rows == 1
    assert asked and all(c == SILVER_WINDOW_COLUMNS for c in asked)
