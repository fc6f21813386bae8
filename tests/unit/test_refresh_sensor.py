"""The touched-partitions sensor over a real lake and an ephemeral Dagster instance."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from test_silver_gold_assets import (
    CLICKS,
    SEARCHES,
    Stream,
    current_hour,
    hour_key,
    lake_env,
    refresh,
)

from assets.gold import (
    EVENTS_MATCH_SILVER,
    EVENTS_PER_HOUR_KEY,
    EVENTS_PER_MINUTE_KEY,
    FRESH_WITHIN_SLA,
    GOLD_KEYS,
    Staleness,
    read_staleness,
)
from assets.silver import SILVER_CHECK_NAMES, silver_key
from pipeline_defs.definitions import build_definitions
from pipeline_defs.partitions import hourly_partitions
from pipeline_defs.refresh import REFRESH_JOB_NAME
from resources import LakeResource
from sensors.refresh import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    REFRESH_SENSOR_NAME,
    REFRESH_TAG,
    RUN_KEY_TAG,
    decide_refresh,
    decode_cursor,
    partition_range,
    refresh_run_key,
)
from tidelake.contracts import TOPICS
from tidelake.layers import StaleHours
from tidelake.settings import RefreshSettings

GOLD = list(GOLD_KEYS)


@pytest.fixture
def stream(tmp_path: Path) -> Stream:
    return Stream(tmp_path)


@pytest.fixture
def defs(clean_env: Path, stream: Stream, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    # The sensor's own decisions, without the worker's grace (tests/unit/test_derive_worker.py).
    return build_definitions(lake_env(stream, monkeypatch) | {"TIDELAKE_WORKER_REFRESH": "false"})


def tick(
    defs: dg.Definitions, stream: Stream, instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorResult:
    sensor = defs.get_sensor_def(REFRESH_SENSOR_NAME)
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"lake": LakeResource(uri=stream.lake.root)},
        definitions=defs,
    )
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def reason(result: dg.SensorResult) -> str:
    return (result.skip_reason.skip_message or "") if result.skip_reason else ""


def versions(stream: Stream) -> dict[str, int]:
    """The current version of every input table the sensor reads that exists."""
    paths = [c.bronze_path for c in (CLICKS, SEARCHES)] + [
        c.silver_path for c in (CLICKS, SEARCHES)
    ]
    paths.append("gold/events_per_minute")
    out = {}
    for path in paths:
        table = stream.lake.open(path)
        if table is not None:
            out[path] = table.version()
    return dict(sorted(out.items()))


@pytest.fixture
def refreshed(defs: dg.Definitions, stream: Stream) -> tuple[dg.DagsterInstance, str]:
    """Two recent hours ingested and refreshed; the instance and the sensor's settled cursor."""
    h1 = current_hour() - timedelta(hours=2)
    h2 = current_hour() - timedelta(hours=1)
    stream.produce(CLICKS, h1 + timedelta(minutes=3), 2)
    stream.produce(SEARCHES, h2 + timedelta(minutes=3), 2)
    stream.ingest()
    instance = dg.DagsterInstance.ephemeral()
    first = tick(defs, stream, instance)
    [request] = first.run_requests or []
    assert request.tags[PARTITION_RANGE_START_TAG] == hour_key(h1)
    assert request.tags[PARTITION_RANGE_END_TAG] == hour_key(h2)
    assert refresh(defs, hour_key(h1), hour_key(h2), instance).success
    settled = tick(defs, stream, instance, first.cursor)
    assert not settled.run_requests, reason(settled)
    return instance, settled.cursor or ""


def test_a_late_batch_for_an_old_hour_requests_exactly_that_hour(
    defs: dg.Definitions, stream: Stream, refreshed: tuple[dg.DagsterInstance, str]
) -> None:
    instance, cursor = refreshed
    old = current_hour() - timedelta(hours=5)
    stream.produce(CLICKS, old + timedelta(minutes=10), 1)  # arrives 5 hours late
    stream.ingest(CLICKS)

    result = tick(defs, stream, instance, cursor)

    [request] = result.run_requests or []
    assert request.job_name in (None, REFRESH_JOB_NAME)
    assert request.tags[PARTITION_RANGE_START_TAG] == hour_key(old)
    assert request.tags[PARTITION_RANGE_END_TAG] == hour_key(old)
    assert request.tags[REFRESH_TAG] == "derived"
    selection = list(request.asset_selection or [])
    assert selection == [silver_key(CLICKS), *GOLD], "the marts are warehouse_sensor's job"
    named = set(request.asset_check_keys or [])
    assert {k.name for k in named if k.asset_key == silver_key(CLICKS)} == set(SILVER_CHECK_NAMES)
    assert dg.AssetCheckKey(EVENTS_PER_MINUTE_KEY, EVENTS_MATCH_SILVER) in named
    assert not {k for k in named if k.name == FRESH_WITHIN_SLA}, "the sensor records freshness"
    assert not any(k.asset_key.path[0] == "marts" for k in named)
    assert request.run_key == refresh_run_key(versions(stream))
    requested, _ = decode_cursor(result.cursor)
    assert requested == versions(stream)


def test_the_current_hour_is_requested_too_only_when_it_is_stale(
    defs: dg.Definitions, stream: Stream, refreshed: tuple[dg.DagsterInstance, str]
) -> None:
    instance, cursor = refreshed
    now = datetime.now(UTC)
    old = current_hour() - timedelta(hours=5)
    stream.produce(CLICKS, old + timedelta(minutes=10), 1)
    stream.produce(SEARCHES, now - timedelta(seconds=5), 1)
    stream.ingest()

    result = tick(defs, stream, instance, cursor)

    [request] = result.run_requests or []
    assert request.tags[PARTITION_RANGE_START_TAG] == hour_key(old)
    assert request.tags[PARTITION_RANGE_END_TAG] == hour_key(now)
    selection = list(request.asset_selection or [])
    assert selection[: 2 + len(GOLD)] == [silver_key(CLICKS), silver_key(SEARCHES), *GOLD]


def test_a_repeated_tick_with_nothing_new_skips(
    defs: dg.Definitions, stream: Stream, refreshed: tuple[dg.DagsterInstance, str]
) -> None:
    instance, cursor = refreshed
    stream.produce(CLICKS, current_hour() - timedelta(hours=3), 1)
    stream.ingest(CLICKS)
    first = tick(defs, stream, instance, cursor)
    assert first.run_requests

    again = tick(defs, stream, instance, first.cursor)

    assert not again.run_requests
    assert "already requested" in reason(again)
    assert again.cursor == first.cursor


def test_nothing_stale_skips(
    defs: dg.Definitions, stream: Stream, refreshed: tuple[dg.DagsterInstance, str]
) -> None:
    instance, cursor = refreshed

    result = tick(defs, stream, instance, cursor)

    assert not result.run_requests
    assert "nothing stale" in reason(result)


def test_a_refresh_run_in_progress_holds_the_request(
    defs: dg.Definitions, stream: Stream, refreshed: tuple[dg.DagsterInstance, str]
) -> None:
    instance, cursor = refreshed
    stream.produce(CLICKS, current_hour() - timedelta(hours=3), 1)
    stream.ingest(CLICKS)
    instance.add_run(
        dg.DagsterRun(
            job_name=REFRESH_JOB_NAME,
            status=dg.DagsterRunStatus.STARTED,
            tags={REFRESH_TAG: "derived"},
        )
    )

    result = tick(defs, stream, instance, cursor)

    assert not result.run_requests
    assert "STARTED" in reason(result)


def test_a_failed_refresh_backs_off_then_retries_with_a_new_key(
    defs: dg.Definitions, stream: Stream, refreshed: tuple[dg.DagsterInstance, str]
) -> None:
    instance, cursor = refreshed
    stream.produce(CLICKS, current_hour() - timedelta(hours=3), 1)
    stream.ingest(CLICKS)
    first = tick(defs, stream, instance, cursor)
    [request] = first.run_requests or []
    failed = dg.DagsterRun(
        job_name=REFRESH_JOB_NAME,
        status=dg.DagsterRunStatus.FAILURE,
        tags={REFRESH_TAG: "derived", RUN_KEY_TAG: request.run_key or ""},
    )
    instance.add_run(failed)

    held = tick(defs, stream, instance, first.cursor)

    assert not held.run_requests
    assert "1 failed run(s) in a row" in reason(held)
    # Once the backoff has passed (the run ended long ago), the same versions get a new key.
    record = instance.get_run_records(dg.RunsFilter(run_ids=[failed.run_id]))[0]
    later = datetime.fromtimestamp(record.update_timestamp.timestamp() + 3600, UTC)
    contracts = list(TOPICS.values())
    retry = decide_refresh(
        contracts,
        read_staleness(stream.lake, contracts),
        [record],
        first.cursor,
        hourly_partitions(RefreshSettings()),
        later,
        "2025-01-01",
    )
    [again] = retry.run_requests or []
    assert again.run_key == f"{request.run_key}:retry-{failed.run_id}"


def test_only_hours_before_the_partitions_start_request_the_first_partition() -> None:
    partitions = hourly_partitions(RefreshSettings(partitions_start="2025-01-01"))
    now = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)

    assert partition_range(["2024-12-31-23:00"], partitions, now) == (
        "2025-01-01-00:00",
        "2025-01-01-00:00",
    )
    assert partition_range(["2026-12-02-02:00"], partitions, now) == (
        "2026-12-02-01:00",
        "2026-12-02-01:00",
    )
    assert partition_range(["2026-01-01-05:00", "2026-12-02-01:00"], partitions, now) == (
        "2026-01-01-05:00",
        "2026-12-02-01:00",
    )


def test_freshness_is_recorded_when_it_changes(
    stream: Stream, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sla = {"TIDELAKE_SILVER_SLA_SECONDS": "1", "TIDELAKE_GOLD_SLA_SECONDS": "1"}
    defs = build_definitions({**lake_env(stream, monkeypatch), **sla})
    stream.produce(CLICKS, current_hour() - timedelta(hours=1), 1)
    stream.ingest(CLICKS)
    instance = dg.DagsterInstance.ephemeral()
    time.sleep(1.2)  # past the 1 s SLA since the bronze commit

    first = tick(defs, stream, instance)
    overdue = {e.asset_key: e for e in first.asset_events if isinstance(e, dg.AssetCheckEvaluation)}
    again = tick(defs, stream, instance, first.cursor)

    assert not overdue[silver_key(CLICKS)].passed
    assert overdue[silver_key(CLICKS)].check_name == FRESH_WITHIN_SLA
    assert not overdue[EVENTS_PER_HOUR_KEY].passed, "gold's wait starts at the bronze commit"
    assert overdue[silver_key(SEARCHES)].passed, "a topic without data is never overdue"
    assert not again.asset_events, "no change, no new evaluation"
    _, states = decode_cursor(first.cursor)
    assert states[silver_key(CLICKS).to_user_string()].startswith("overdue:")
    assert json.loads(first.cursor or "")["freshness"]


def staleness(silver_hours: list[str], versions: dict[str, int]) -> Staleness:
    """A hand-made tick input: clicks' silver stale in ``silver_hours``."""
    silver = {c.name: StaleHours([], {c.bronze_path: 0}) for c in TOPICS.values()}
    silver[CLICKS.name] = StaleHours(silver_hours, versions)
    return Staleness(silver, StaleHours([], {}), StaleHours([], {}))


def decide(
    stale: Staleness, runs: list[dg.RunRecord], cursor: str | None, now: datetime
) -> dg.SensorResult:
    return decide_refresh(
        list(TOPICS.values()),
        stale,
        runs,
        cursor,
        hourly_partitions(RefreshSettings()),
        now,
        "2025-01-01",
    )


def refresh_record(status: dg.DagsterRunStatus, key: str) -> dg.RunRecord:
    return dg.RunRecord(
        storage_id=1,
        dagster_run=dg.DagsterRun(
            job_name=REFRESH_JOB_NAME,
            status=status,
            tags={REFRESH_TAG: "derived", RUN_KEY_TAG: key},
        ),
        create_timestamp=datetime(2026, 12, 2, tzinfo=UTC),
        update_timestamp=datetime(2026, 12, 2, tzinfo=UTC),
        end_time=datetime(2026, 12, 2, tzinfo=UTC).timestamp(),
    )


NOW = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)


def test_an_hour_ahead_of_the_open_one_is_refreshed_by_a_run_of_the_last_partition() -> None:
    # Event times ahead of our clock are not partitions yet; the refresh functions include them
    # in any run, so the sensor must not wait for them to become one.
    result = decide(staleness(["2026-12-02-02:00"], {CLICKS.bronze_path: 3}), [], None, NOW)

    [request] = result.run_requests or []
    assert request.tags[PARTITION_RANGE_START_TAG] == "2026-12-02-01:00"  # the open hour
    assert request.tags[PARTITION_RANGE_END_TAG] == "2026-12-02-01:00"


def test_a_successful_run_that_left_hours_stale_is_asked_again_under_a_new_key() -> None:
    stale = staleness(["2026-12-02-00:00"], {CLICKS.bronze_path: 3})
    first = decide(stale, [], None, NOW)
    [request] = first.run_requests or []
    done = refresh_record(dg.DagsterRunStatus.SUCCESS, request.run_key or "")

    again = decide(stale, [done], first.cursor, NOW)

    [retry] = again.run_requests or []
    assert retry.run_key == f"{request.run_key}:again-{done.dagster_run.run_id}"


def test_new_input_versions_after_a_success_get_the_plain_key() -> None:
    first = decide(staleness(["2026-12-02-00:00"], {CLICKS.bronze_path: 3}), [], None, NOW)
    [request] = first.run_requests or []
    done = refresh_record(dg.DagsterRunStatus.SUCCESS, request.run_key or "")
    newer = {CLICKS.bronze_path: 4}

    result = decide(staleness(["2026-12-02-00:00"], newer), [done], first.cursor, NOW)

    [fresh_request] = result.run_requests or []
    assert fresh_request.run_key == refresh_run_key(
        {**{c.bronze_path: 0 for c in TOPICS.values()}, **newer}
    )
