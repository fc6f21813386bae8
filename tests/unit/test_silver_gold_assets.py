"""Silver and gold assets, their checks and the refresh job, over a small real lake.

Bronze is written by the real ingestion engine from an in-memory Kafka; the job is the one the
code location defines, run in process against an ephemeral Dagster instance.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import orjson
import polars as pl
import pytest
from deltalake import write_deltalake

import assets.silver.assets
from assets.dbt import WINDOW_TAG
from assets.gold import EVENTS_MATCH_SILVER, EVENTS_PER_HOUR_KEY, EVENTS_PER_MINUTE_KEY, GOLD_KEYS
from assets.silver import (
    EVENT_ID_UNIQUE,
    EVENTS_BEFORE_PARTITIONS_START,
    MATCHES_BRONZE,
    PANDERA_SCHEMA,
    SILVER_CHECK_NAMES,
    silver_key,
)
from pipeline_defs.definitions import build_definitions
from pipeline_defs.refresh import REFRESH_JOB_NAME, WAREHOUSE_JOB_NAME
from sensors.refresh import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, REFRESH_TAG
from tidelake.contracts import TOPICS, TopicContract
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import IngestEngine
from tidelake.ingest.positions import hour_partition_key
from tidelake.lake import Lake
from tidelake.layers import RefreshResult
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings

CLICKS, SEARCHES = TOPICS["shop.clicks"], TOPICS["shop.searches"]
ENV = {"TIDELAKE_ENV": "test"}


def hour_key(when: datetime) -> str:
    return hour_partition_key(when.date(), when.hour)


def current_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def event(contract: TopicContract, when: datetime, event_id: str | None = None) -> bytes:
    """A valid message of ``contract`` at ``when``."""
    values: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": sorted(contract.event_types)[0],
        "event_time": when.isoformat(),
    }
    for f in contract.fields:
        values[f.name] = {"string": f"{f.name}-x", "int": 1, "float": 1.5, "timestamp": None}[
            f.kind
        ]
        if f.kind == "timestamp":
            values[f.name] = when.isoformat()
    return orjson.dumps(values)


class Stream:
    """An in-memory Kafka with the click and search topics, ingested into a temporary lake."""

    def __init__(self, root: Path) -> None:
        self.fake = FakeKafka()
        for c in (CLICKS, SEARCHES):
            self.fake.create_topic(c.name, partitions=2)
        self.root = root
        self.lake = Lake.from_settings(LakeSettings(uri=str(root / "lake")))

    def produce(self, contract: TopicContract, when: datetime, n: int = 1) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in range(n)]
        for i, event_id in enumerate(ids):
            self.fake.produce(contract.name, event(contract, when, event_id), key=f"u{i}".encode())
        return ids

    def resend(self, contract: TopicContract, when: datetime, event_id: str) -> None:
        """A producer retry: the same event again, at a new offset."""
        self.fake.produce(contract.name, event(contract, when, event_id), key=b"u0")

    def ingest(self, *contracts: TopicContract) -> None:
        engine = IngestEngine(
            self.lake,
            KafkaSettings(consumer_group="g"),
            IngestSettings(quiet_seconds=0.05),
            consumer_factory=self.fake.consumer_factory,
            admin_factory=self.fake.admin_factory,
        )
        for c in contracts or (CLICKS, SEARCHES):
            engine.ingest_topic(c)


@pytest.fixture
def stream(tmp_path: Path) -> Stream:
    return Stream(tmp_path)


def lake_env(stream: Stream, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The test environment pointing the code location at ``stream``'s lake and a warehouse
    beside it (set in the process too: resources resolve their ``EnvVar``s at run time)."""
    env = {
        **ENV,
        "LAKE_URI": stream.lake.root,
        "TIDELAKE_WAREHOUSE_PATH": str(stream.root / "warehouse.duckdb"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def defs(clean_env: Path, stream: Stream, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    return build_definitions(lake_env(stream, monkeypatch))


DERIVED = [*(silver_key(c) for c in TOPICS.values()), *GOLD_KEYS]
"""Silver and gold: the unit tests leave the dbt marts (a dbt build, ~10 s) out of their runs."""


def refresh(
    defs: dg.Definitions,
    first: str,
    last: str,
    instance: dg.DagsterInstance | None = None,
    selection: list[dg.AssetKey] | None = DERIVED,
) -> dg.ExecuteInProcessResult:
    """One ``refresh_derived`` run over the partitions ``first``..``last`` (``selection`` None:
    the whole job)."""
    job = defs.resolve_job_def(REFRESH_JOB_NAME)
    return job.execute_in_process(
        instance=instance or dg.DagsterInstance.ephemeral(),
        tags={PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last},
        asset_selection=selection,
        raise_on_error=False,
    )


def materializations(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    """Partition key → metadata values of ``key``'s materializations in the run."""
    return {
        m.materialization.partition: {k: v.value for k, v in m.materialization.metadata.items()}
        for m in result.get_asset_materialization_events()
        if m.asset_key == key
    }


def checks(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == key}


def read(lake: Lake, path: str) -> pl.DataFrame:
    table = lake.open(path)
    assert table is not None, path
    return pl.DataFrame(table.to_pyarrow_table())


# -- shape -------------------------------------------------------------------------------------


def test_silver_and_gold_are_hourly_partitioned_with_single_run_backfills(
    defs: dg.Definitions,
) -> None:
    graph = defs.resolve_asset_graph()
    keys = [*(silver_key(c) for c in TOPICS.values()), EVENTS_PER_MINUTE_KEY, EVENTS_PER_HOUR_KEY]
    for key in keys:
        node = graph.get(key)
        partitions = node.partitions_def
        assert isinstance(partitions, dg.HourlyPartitionsDefinition)
        assert partitions.get_first_partition_key() == "2025-01-01-00:00"
        assert partitions.get_last_partition_key() == hour_key(current_hour()), "open hour"
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        assert node.description
    for c in TOPICS.values():
        node = graph.get(silver_key(c))
        assert node.parent_keys == {dg.AssetKey(["bronze", c.table_name])}
        assert node.group_name == "silver"
        names = [col.name for col in node.metadata["dagster/column_schema"].columns]
        assert names == c.silver_schema().names
    assert graph.get(EVENTS_PER_MINUTE_KEY).parent_keys == {silver_key(c) for c in TOPICS.values()}
    assert graph.get(EVENTS_PER_HOUR_KEY).parent_keys == {EVENTS_PER_MINUTE_KEY}


def test_the_blocking_checks_are_the_ones_gold_must_not_build_past(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for c in TOPICS.values():
        specs = {
            k.name: graph.get_check_spec(k)
            for k in graph.asset_check_keys
            if k.asset_key == silver_key(c)
        }
        assert set(specs) == {*SILVER_CHECK_NAMES, "fresh_within_sla"}
        blocking = {n for n, s in specs.items() if s.blocking}
        assert blocking == {EVENT_ID_UNIQUE, PANDERA_SCHEMA, MATCHES_BRONZE}
    spec = graph.get_check_spec(dg.AssetCheckKey(EVENTS_PER_MINUTE_KEY, EVENTS_MATCH_SILVER))
    assert spec.blocking


def test_the_refresh_job_runs_every_derived_asset_in_process(defs: dg.Definitions) -> None:
    job = defs.resolve_job_def(REFRESH_JOB_NAME)
    assert job.executor_def is dg.in_process_executor
    assert job.run_tags[REFRESH_TAG] == "derived"
    selected = job.asset_layer.selected_asset_keys
    # The dbt build (~10 s) is its own job: in every refresh it would delay gold's freshness.
    assert selected == {*(silver_key(c) for c in TOPICS.values()), *GOLD}
    check_names = {k.name for k in job.asset_layer.asset_graph.asset_check_keys}
    assert "fresh_within_sla" not in check_names, "the sensor records freshness, not the runs"
    marts_job = defs.resolve_job_def(WAREHOUSE_JOB_NAME)
    marts = marts_job.asset_layer.selected_asset_keys
    assert dg.AssetKey(["marts", "daily_kpis"]) in marts
    assert {k.path[0] for k in marts} == {"staging", "marts"}
    assert marts_job.executor_def is dg.in_process_executor


GOLD = set(GOLD_KEYS)


# -- a two-hour range --------------------------------------------------------------------------


def test_a_two_hour_range_refreshes_silver_and_gold_and_passes_its_checks(
    defs: dg.Definitions, stream: Stream
) -> None:
    h1 = current_hour() - timedelta(hours=2)
    h2 = current_hour() - timedelta(hours=1)
    clicks = stream.produce(CLICKS, h1 + timedelta(minutes=5), 3)
    stream.produce(CLICKS, h2 + timedelta(minutes=7), 2)
    stream.resend(CLICKS, h1 + timedelta(minutes=5), clicks[0])  # a producer retry
    stream.produce(SEARCHES, h2 + timedelta(minutes=7), 4)
    stream.ingest()

    result = refresh(defs, hour_key(h1), hour_key(h2))

    assert result.success
    silver = read(stream.lake, CLICKS.silver_path)
    assert silver.height == 5
    assert silver.filter(pl.col("event_id") == clicks[0])["_deliveries"].to_list() == [2]
    meta = materializations(result, silver_key(CLICKS))
    assert set(meta) == {hour_key(h1), hour_key(h2)}
    assert meta[hour_key(h1)]["status"] == "rewritten"
    assert meta[hour_key(h1)]["rows"] == 3
    assert meta[hour_key(h1)]["duplicates_removed"] == 1
    assert meta[hour_key(h2)]["rows"] == 2
    assert meta[hour_key(h1)]["hours_written"] == 2
    assert meta[hour_key(h1)]["complete"] is True
    assert meta[hour_key(h1)]["input_versions"] == {CLICKS.bronze_path: 1}
    # A topic with data in only one hour of the range: the other is recorded as unchanged.
    searches = materializations(result, silver_key(SEARCHES))
    assert searches[hour_key(h1)]["status"] == "unchanged"
    assert searches[hour_key(h1)]["rows"] == 0
    assert searches[hour_key(h2)]["rows"] == 4

    minute = read(stream.lake, "gold/events_per_minute")
    clicks_h1 = minute.filter((pl.col("topic") == CLICKS.name) & (pl.col("event_hour") == h1.hour))
    assert clicks_h1["events"].sum() == 3
    assert clicks_h1["duplicates"].sum() == 1
    hourly = read(stream.lake, "gold/events_per_hour")
    assert hourly["events"].sum() == 9
    assert materializations(result, EVENTS_PER_HOUR_KEY)[hour_key(h2)]["rows"] == 2

    for key in [silver_key(CLICKS), silver_key(SEARCHES), EVENTS_PER_MINUTE_KEY]:
        evaluations = checks(result, key)
        failed = {n: e.description for n, e in evaluations.items() if not e.passed}
        assert not failed, (key, failed)
    # (fresh_within_sla too: execute_in_process selects every check of the selected assets)
    assert set(checks(result, silver_key(CLICKS))) >= set(SILVER_CHECK_NAMES)


def test_running_the_same_range_again_rewrites_nothing(
    defs: dg.Definitions, stream: Stream
) -> None:
    h1 = current_hour() - timedelta(hours=1)
    stream.produce(CLICKS, h1 + timedelta(minutes=1), 2)
    stream.ingest(CLICKS)
    instance = dg.DagsterInstance.ephemeral()
    assert refresh(defs, hour_key(h1), hour_key(h1), instance).success
    version = stream.lake.open(CLICKS.silver_path).version()  # type: ignore[union-attr]

    again = refresh(defs, hour_key(h1), hour_key(h1), instance)

    assert again.success
    assert stream.lake.open(CLICKS.silver_path).version() == version  # type: ignore[union-attr]
    meta = materializations(again, silver_key(CLICKS))[hour_key(h1)]
    assert meta["status"] == "unchanged"
    assert meta["rows"] == 2
    assert meta["hours_written"] == 0


def test_a_duplicate_event_id_in_silver_fails_event_id_unique_and_blocks_gold(
    defs: dg.Definitions, stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    h1 = current_hour() - timedelta(hours=1)
    stream.produce(CLICKS, h1 + timedelta(minutes=1), 2)
    stream.ingest(CLICKS)
    real = assets.silver.assets.refresh_silver

    def broken_dedupe(lake: Lake, contract: TopicContract, *a: Any, **k: Any) -> RefreshResult:
        """The real refresh, then one of its rows written a second time (a dedupe bug)."""
        result = real(lake, contract, *a, **k)
        table = lake.open(contract.silver_path)
        if table is not None and table.version() >= 0:
            write_deltalake(
                lake.uri(contract.silver_path),
                table.to_pyarrow_table().slice(0, 1),
                mode="append",
                storage_options=lake.storage_options,
            )
        return result

    monkeypatch.setattr(assets.silver.assets, "refresh_silver", broken_dedupe)

    result = refresh(defs, hour_key(h1), hour_key(h1))

    unique = checks(result, silver_key(CLICKS))[EVENT_ID_UNIQUE]
    assert not unique.passed
    assert unique.severity == dg.AssetCheckSeverity.ERROR
    assert "more than once" in (unique.description or "")
    assert not checks(result, silver_key(CLICKS))[MATCHES_BRONZE].passed
    assert checks(result, silver_key(CLICKS))[PANDERA_SCHEMA].passed
    # Blocking: gold did not build on the bad hour.
    assert not materializations(result, EVENTS_PER_MINUTE_KEY)
    assert stream.lake.open("gold/events_per_minute") is None


def test_events_before_the_partitions_start_are_refreshed_and_counted_by_a_warning(
    defs: dg.Definitions, stream: Stream
) -> None:
    old = datetime(2024, 12, 31, 23, 30, tzinfo=UTC)
    stream.produce(CLICKS, old, 2)
    h1 = current_hour() - timedelta(hours=1)
    stream.produce(CLICKS, h1 + timedelta(minutes=1), 1)
    stream.ingest(CLICKS)

    result = refresh(defs, hour_key(h1), hour_key(h1))

    assert result.success
    assert read(stream.lake, CLICKS.silver_path).height == 3
    before = checks(result, silver_key(CLICKS))[EVENTS_BEFORE_PARTITIONS_START]
    assert not before.passed
    assert before.severity == dg.AssetCheckSeverity.WARN
    assert before.description.startswith(
        "2 events before TIDELAKE_PARTITIONS_START (2025-01-01) are in silver"
    )
    meta = materializations(result, silver_key(CLICKS))[hour_key(h1)]
    assert meta["hours_written_outside_partitions"] == 1
    assert read(stream.lake, "gold/events_per_minute")["events"].sum() == 3


@pytest.mark.slow
def test_the_warehouse_job_builds_the_marts_of_the_days_gold_touched(
    defs: dg.Definitions, stream: Stream
) -> None:
    h1 = current_hour() - timedelta(hours=1)
    stream.produce(CLICKS, h1 + timedelta(minutes=1), 2)
    stream.ingest(CLICKS)
    assert refresh(defs, hour_key(h1), hour_key(h1), selection=None).success

    day = h1.date().isoformat()
    result = defs.resolve_job_def(WAREHOUSE_JOB_NAME).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={WINDOW_TAG: f"{day}..{day}"},
        raise_on_error=False,
    )

    assert result.success
    kpis = dg.AssetKey(["marts", "daily_kpis"])
    assert kpis in [m.asset_key for m in result.get_asset_materialization_events()]
    con = duckdb.connect(str(stream.root / "warehouse.duckdb"), read_only=True)
    try:
        days = [row[0] for row in con.execute("select date from marts.daily_kpis").fetchall()]
    finally:
        con.close()
    assert h1.date() in days
