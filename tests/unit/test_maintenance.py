"""Table maintenance (tidelake.maintenance) on real Delta tables written by the real engine."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import orjson
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipeline_defs.maintenance import maintenance_job_and_schedule
from resources import LakeResource
from tidelake.cli import main as cli_main
from tidelake.contracts import QUARANTINE_PATH, TOPICS
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import IngestEngine, app_id
from tidelake.ingest.annotations import read_annotations
from tidelake.lake import Lake
from tidelake.maintenance import (
    LEASE_APP_ID,
    MaintenanceError,
    lake_tables,
    maintain_lake,
    maintain_table,
)
from tidelake.maintenance import table as table_module
from tidelake.maintenance.plan import Partition, closed_candidates, window_end
from tidelake.maintenance.table import last_checkpoint_version
from tidelake.quality.bronze import check_unique_coordinates
from tidelake.quality.contiguity import check_offsets_contiguous
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings, RefreshSettings

CLICKS = TOPICS["shop.clicks"]
GROUP = "g"
NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
CLOSED_HOURS = (NOW - timedelta(hours=10), NOW - timedelta(hours=9))
OPEN_HOUR = NOW - timedelta(hours=1)
HORIZON = 6


def click(at: datetime) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "click",
            "event_time": at.isoformat(),
            "user_id": "u",
            "session_id": "s",
            "product_id": "p",
            "element": "e",
        }
    )


def label(at: datetime) -> str:
    return f"event_date={at.date().isoformat()}/event_hour={at.hour}"


@pytest.fixture
def kafka() -> FakeKafka:
    fake = FakeKafka()
    fake.create_topic(CLICKS.name, partitions=2)
    return fake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))


def engine(kafka: FakeKafka, lake: Lake) -> IngestEngine:
    return IngestEngine(
        lake,
        KafkaSettings(consumer_group=GROUP),
        IngestSettings(quiet_seconds=0.02),
        consumer_factory=kafka.consumer_factory,
    )


def ingest_batches(kafka: FakeKafka, lake: Lake, batches: int = 3, bad: bool = False) -> None:
    """``batches`` micro-batches, each landing rows in the two closed hours and the open one,
    so every hour partition holds ``batches`` files."""
    for _ in range(batches):
        for i, at in enumerate((*CLOSED_HOURS, OPEN_HOUR) * 2):
            kafka.produce(CLICKS.name, click(at), partition=i % 2)
        if bad:
            kafka.produce(CLICKS.name, b"{oops", partition=0)
        engine(kafka, lake).ingest_topic(CLICKS)


def bronze(lake: Lake) -> DeltaTable:
    table = lake.open(CLICKS.bronze_path)
    assert table is not None
    return table


def files_per_partition(table: DeltaTable) -> dict[str, int]:
    actions = pa.table(table.get_add_actions(flatten=True))
    dates = actions.column("partition.event_date").to_pylist()
    hours = actions.column("partition.event_hour").to_pylist()
    return dict(
        Counter(
            f"event_date={d.isoformat()}/event_hour={h}" for d, h in zip(dates, hours, strict=True)
        )
    )


def coordinates(table: DeltaTable) -> Counter[tuple[int, int]]:
    rows = table.to_pyarrow_table(columns=["_partition", "_offset"])
    return Counter(zip(rows["_partition"].to_pylist(), rows["_offset"].to_pylist(), strict=True))


def txn_versions(table: DeltaTable) -> dict[int, int | None]:
    return {p: table.transaction_version(app_id(GROUP, CLICKS.name, p)) for p in (0, 1)}


def run(lake: Lake, path: str = CLICKS.bronze_path, **kw: object) -> table_module.MaintenanceReport:
    return maintain_table(lake, path, now=NOW, horizon_hours=HORIZON, **kw)  # type: ignore[arg-type]


# -- which partitions ---------------------------------------------------------------------------


def test_an_hour_is_closed_only_once_its_end_is_older_than_the_horizon() -> None:
    end = window_end({"event_date": date(2025, 1, 1), "event_hour": 3})
    assert end == datetime(2025, 1, 1, 4, tzinfo=UTC)
    hour = Partition((("event_hour", 3),), end, files=3, small_files=3, size_bytes=1)
    assert closed_candidates([hour], end + timedelta(hours=6), 6) == [hour]
    assert closed_candidates([hour], end + timedelta(hours=6, seconds=-1), 6) == []
    single = Partition((("event_hour", 3),), end, files=1, small_files=1, size_bytes=1)
    assert closed_candidates([single], end + timedelta(days=1), 6) == []
    assert window_end({"_topic": "t", "ingest_date": date(2025, 1, 1)}) == datetime(
        2025, 1, 2, tzinfo=UTC
    )


def test_only_closed_hour_partitions_are_compacted_and_they_end_with_fewer_files(
    kafka: FakeKafka, lake: Lake
) -> None:
    ingest_batches(kafka, lake)
    before = files_per_partition(bronze(lake))
    assert set(before.values()) == {3}
    report = run(lake)
    after = files_per_partition(bronze(lake))
    assert sorted(report.partitions_compacted) == sorted(label(h) for h in CLOSED_HOURS)
    assert all(after[label(h)] == 1 for h in CLOSED_HOURS)
    assert after[label(OPEN_HOUR)] == 3
    assert (report.files_before, report.files_after) == (6, 2)
    assert report.bytes_before > 0 and report.bytes_after > 0
    assert report.ok and not report.partitions_skipped


def test_compaction_keeps_the_same_rows_the_txn_offsets_and_the_annotations(
    kafka: FakeKafka, lake: Lake
) -> None:
    ingest_batches(kafka, lake)
    table = bronze(lake)
    rows, txns, version = coordinates(table), txn_versions(table), table.version()
    ingest_notes = [(c.version, c.annotation.ranges) for c in read_annotations(table)]
    run(lake)
    table = bronze(lake)
    assert coordinates(table) == rows
    assert txn_versions(table) == txns
    assert all(v is not None for v in txns.values())
    assert [
        (c.version, c.annotation.ranges) for c in read_annotations(table, topic=CLICKS.name)
    ] == (ingest_notes)
    # A reader of "commits since v" about the topic sees nothing: maintenance added no rows.
    assert read_annotations(table, version, CLICKS.name) == []
    assert {c.annotation.kind for c in read_annotations(table, version)} == {"maintenance"}
    assert all(c.annotation.stats["hours"] == [] for c in read_annotations(table, version))


def test_the_bronze_checks_pass_for_a_batch_committed_after_maintenance(
    kafka: FakeKafka, lake: Lake
) -> None:
    ingest_batches(kafka, lake, bad=True)
    run(lake)
    for i, at in enumerate(CLOSED_HOURS * 2):  # late events into the hours just compacted
        kafka.produce(CLICKS.name, click(at), partition=i % 2)
    batch = engine(kafka, lake).ingest_topic(CLICKS)
    run(lake)  # and compact them again before the checks read
    settings = KafkaSettings(consumer_group=GROUP)
    for window, since in ((batch.window, batch.since_version), (None, None)):
        assert check_offsets_contiguous(lake, CLICKS, settings, window, since).passed
        assert check_unique_coordinates(lake, CLICKS, window, since).passed


def test_a_vacuum_retention_below_seven_days_is_refused(lake: Lake) -> None:
    with pytest.raises(MaintenanceError, match="at least 168 h"):
        run(lake, retention_hours=167)
    with pytest.raises(MaintenanceError):
        maintain_lake(lake, [CLICKS], RefreshSettings(), retention_hours=24)


def test_a_dry_run_changes_nothing_and_reports_the_plan(kafka: FakeKafka, lake: Lake) -> None:
    ingest_batches(kafka, lake)
    table = bronze(lake)
    version, files = table.version(), files_per_partition(table)
    report = run(lake, dry_run=True, checkpoint_every=1)
    table = bronze(lake)
    assert (table.version(), files_per_partition(table)) == (version, files)
    assert last_checkpoint_version(table, {}) is None
    assert sorted(report.partitions_compacted) == sorted(label(h) for h in CLOSED_HOURS)
    assert report.files_before == 6 and report.dry_run


def test_a_racing_append_to_the_same_partition_is_kept(kafka: FakeKafka, lake: Lake) -> None:
    ingest_batches(kafka, lake)
    target = label(CLOSED_HOURS[0])

    def late_append(partition: Partition, _: DeltaTable) -> None:
        if partition.label == target and kafka.end_offsets(CLICKS.name)[0] < 100:
            kafka.produce(CLICKS.name, click(CLOSED_HOURS[0]), partition=0)
            engine(kafka, lake).ingest_topic(CLICKS)

    report = run(lake, on_snapshot=late_append)
    table = bronze(lake)
    assert report.interleaved_commits >= 1
    assert sum(coordinates(table).values()) == sum(kafka.end_offsets(CLICKS.name).values())
    assert max(coordinates(table).values()) == 1
    assert txn_versions(table) == kafka.end_offsets(CLICKS.name)


def test_a_conflicting_overwrite_is_retried_from_a_fresh_snapshot(lake: Lake) -> None:
    path = "silver/shop_clicks"
    hour = CLOSED_HOURS[0]
    rows = lambda xs: pa.table(  # noqa: E731
        {
            "x": pa.array(xs, pa.int64()),
            "event_date": pa.array([hour.date()] * len(xs), pa.date32()),
            "event_hour": pa.array([hour.hour] * len(xs), pa.int32()),
        }
    )
    for x in range(3):
        write_deltalake(
            lake.uri(path), rows([x]), mode="append", partition_by=["event_date", "event_hour"]
        )
    calls: list[int] = []

    def refresh_wins(_: Partition, __: DeltaTable) -> None:
        calls.append(1)
        if len(calls) == 1:  # a refresh rewrites the hour (two files) while we compact it
            predicate = f"event_date = '{hour.date()}' AND event_hour = {hour.hour}"
            write_deltalake(lake.uri(path), rows([10]), mode="overwrite", predicate=predicate)
            write_deltalake(lake.uri(path), rows([11]), mode="append")

    report = run(lake, path, on_snapshot=refresh_wins)
    table = lake.open(path)
    assert table is not None
    assert report.conflicts_retried == 1 and report.partitions_compacted == [label(hour)]
    # The conflicting compaction did not resurrect the rows the refresh replaced.
    assert sorted(table.to_pyarrow_table()["x"].to_pylist()) == [10, 11]


def test_a_partition_that_keeps_conflicting_is_skipped_not_failed(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_module, "BACKOFF_SECONDS", 0.0)
    path = "gold/events_per_minute"
    hour = CLOSED_HOURS[0]
    predicate = f"event_date = '{hour.date()}' AND event_hour = {hour.hour}"
    data = pa.table(
        {
            "x": pa.array([1], pa.int64()),
            "event_date": pa.array([hour.date()], pa.date32()),
            "event_hour": pa.array([hour.hour], pa.int32()),
        }
    )
    for _ in range(2):
        write_deltalake(
            lake.uri(path), data, mode="append", partition_by=["event_date", "event_hour"]
        )

    def always_rewritten(_: Partition, __: DeltaTable) -> None:
        write_deltalake(lake.uri(path), data, mode="overwrite", predicate=predicate)
        write_deltalake(lake.uri(path), data, mode="append")

    report = run(lake, path, on_snapshot=always_rewritten)
    assert report.ok and report.partitions_compacted == []
    assert [s.partition for s in report.partitions_skipped] == [label(hour)]
    assert report.conflicts_retried == table_module.COMPACT_ATTEMPTS


def test_a_second_maintainer_leaves_a_table_alone_while_the_lease_is_held(
    kafka: FakeKafka, lake: Lake
) -> None:
    # Regression: delta-rs commits two compactions of one partition from the same snapshot
    # and the rows end up twice; the lease makes the second maintainer skip the table.
    ingest_batches(kafka, lake)
    rows = coordinates(bronze(lake))
    inner: list[table_module.MaintenanceReport] = []

    def second_maintainer(_: Partition, __: DeltaTable) -> None:
        if not inner:
            inner.append(run(lake))

    outer = run(lake, on_snapshot=second_maintainer)
    assert inner[0].lease is not None and inner[0].partitions_compacted == []
    assert len(outer.partitions_compacted) == 2
    assert coordinates(bronze(lake)) == rows
    table = bronze(lake)
    held = table.transaction_version(LEASE_APP_ID)
    assert held is not None and held <= datetime.now(UTC).timestamp() * 1000  # released
    assert run(lake).lease is None  # a released lease does not block the next pass


def test_a_checkpoint_is_written_when_enough_commits_landed_since_the_last(
    kafka: FakeKafka, lake: Lake
) -> None:
    ingest_batches(kafka, lake)
    report = run(lake, checkpoint_every=3)
    table = bronze(lake)
    assert report.checkpoint_version == last_checkpoint_version(table, {}) is not None
    assert run(lake, checkpoint_every=3).checkpoint_version is None  # nothing new since
    assert report.vacuumed_files == 0  # files removed just now are kept for 7 days


def test_quarantine_is_compacted_by_closed_ingest_day(kafka: FakeKafka, lake: Lake) -> None:
    ingest_batches(kafka, lake, batches=3, bad=True)
    today = maintain_table(lake, QUARANTINE_PATH, now=NOW, horizon_hours=HORIZON)
    assert today.partitions_compacted == []  # today's ingest day is still open
    later = maintain_table(
        lake, QUARANTINE_PATH, now=datetime.now(UTC) + timedelta(days=2), horizon_hours=HORIZON
    )
    assert len(later.partitions_compacted) == 1 and later.files_after == 1
    assert later.partitions_compacted[0].startswith("_topic=")


def test_maintain_lake_covers_bronze_silver_gold_and_quarantine(
    kafka: FakeKafka, lake: Lake
) -> None:
    ingest_batches(kafka, lake, batches=2, bad=True)
    data = pa.table({"x": [1], "event_date": [CLOSED_HOURS[0].date()], "event_hour": [1]})
    for path in ("silver/shop_clicks", "gold/events_per_hour"):
        write_deltalake(lake.uri(path), data, partition_by=["event_date", "event_hour"])
    expected = [CLICKS.bronze_path, "silver/shop_clicks", "gold/events_per_hour", QUARANTINE_PATH]
    assert lake_tables(lake, list(TOPICS.values())) == expected
    reports = maintain_lake(lake, list(TOPICS.values()), RefreshSettings(), now=NOW)
    assert [r.path for r in reports] == expected
    assert all(r.ok for r in reports)
    assert len(reports[0].partitions_compacted) == 2


# -- Dagster job and schedule, command line ------------------------------------------------------


def test_the_maintenance_job_compacts_the_lake_and_reports_metadata(
    kafka: FakeKafka, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDELAKE_LATENESS_HORIZON_HOURS", str(HORIZON))
    ingest_batches(kafka, lake)
    job, _ = maintenance_job_and_schedule("test")
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            instance=instance, resources={"lake": LakeResource(uri=lake.root)}
        )
        assert result.success
        (output,) = [e for e in result.all_events if e.is_successful_output]
        meta = output.step_output_data.metadata
        assert meta["partitions_compacted"].value == 2
        assert meta["files_before"].value == 6 and meta["files_after"].value == 2
        assert not instance.get_asset_keys()  # materialization-free
    assert all(files_per_partition(bronze(lake))[label(h)] == 1 for h in CLOSED_HOURS)


def test_the_schedule_runs_hourly_at_17_and_skips_while_a_run_is_in_progress(
    dagster_home: Path,
) -> None:
    job, schedule = maintenance_job_and_schedule("test")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("17 * * * *", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert maintenance_job_and_schedule("prod")[1].default_status == (
        dg.DefaultScheduleStatus.RUNNING
    )
    with dg.DagsterInstance.get() as instance:  # the tick needs an instance with a ref
        tick = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert len(tick.run_requests or []) == 1
        instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED)
        tick = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert not tick.run_requests


def test_tidelake_maintain_dry_run_prints_json_and_changes_nothing(
    kafka: FakeKafka,
    lake: Lake,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ingest_batches(kafka, lake)
    monkeypatch.setenv("LAKE_URI", lake.root)
    monkeypatch.setenv("TIDELAKE_LATENESS_HORIZON_HOURS", str(HORIZON))
    version = bronze(lake).version()
    assert cli_main(["maintain", "--dry-run", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in reports] == [CLICKS.bronze_path, QUARANTINE_PATH]
    assert reports[0]["dry_run"] and len(reports[0]["partitions_compacted"]) == 2
    assert bronze(lake).version() == version
    assert cli_main(["maintain", "--retention-hours", "24"]) == 2
