"""Silver and gold refreshed in the ingestion worker: the round, the loop and the sensor's grace.

A round runs over a real (local) lake fed by the in-memory Kafka, recording on an ephemeral
Dagster instance; the loop runs in a real thread.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from test_silver_gold_assets import CLICKS, SEARCHES, Stream, current_hour, hour_key, lake_env

import pipeline_defs.derive_worker as derive_worker
from assets.gold import (
    EVENTS_MATCH_SILVER,
    EVENTS_PER_HOUR_KEY,
    EVENTS_PER_MINUTE_KEY,
    read_staleness,
)
from assets.silver import COMPLETE_VS_LEDGER, EVENT_ID_UNIQUE, MATCHES_BRONZE, silver_key
from pipeline_defs.definitions import build_definitions
from pipeline_defs.derive_worker import WORKER_SOURCE, DerivedRefresher
from pipeline_defs.partitions import hourly_partitions
from sensors.refresh import REFRESH_SENSOR_NAME, WORKER_GRACE_SECONDS, decide_refresh
from tidelake.contracts import TOPICS
from tidelake.layers import refresh_silver, stale_gold_hours, stale_silver_hours
from tidelake.layers.follow import RefreshLoop, RefreshRoundError
from tidelake.quality.outcome import CheckOutcome
from tidelake.settings import ConfigError, RefreshSettings

SETTINGS = RefreshSettings(
    partitions_start=(datetime.now(UTC) - timedelta(days=2)).date().isoformat()
)


@pytest.fixture
def stream(tmp_path: Path) -> Stream:
    return Stream(tmp_path)


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def refresher(stream: Stream, instance: dg.DagsterInstance, **kw: Any) -> DerivedRefresher:
    return DerivedRefresher(
        stream.lake,
        [CLICKS, SEARCHES],
        SETTINGS,
        hourly_partitions(SETTINGS),
        instance.report_runless_asset_event,
        **kw,
    )


def partitions_materialized(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[str]:
    """Partition of every materialization of ``key``, oldest first."""
    records = instance.fetch_materializations(key, limit=1000, ascending=True).records
    return [r.asset_materialization.partition for r in records if r.asset_materialization]


def gold_events(stream: Stream) -> dict[str, int]:
    table = stream.lake.open("gold/events_per_minute")
    assert table is not None
    frame = pl.from_arrow(table.to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return dict(frame.group_by("topic").agg(pl.col("events").sum()).iter_rows())


def test_a_round_refreshes_silver_and_gold_and_records_each_hour_partition(
    stream: Stream, instance: dg.DagsterInstance
) -> None:
    h1, h2 = current_hour() - timedelta(hours=1), current_hour()
    stream.produce(CLICKS, h1 + timedelta(minutes=5), 3)
    stream.produce(CLICKS, h2 + timedelta(minutes=1), 2)
    stream.produce(SEARCHES, h2 + timedelta(minutes=2), 4)
    stream.ingest()

    assert refresher(stream, instance)() is False, "nothing left for another round"

    assert gold_events(stream) == {CLICKS.name: 5, SEARCHES.name: 4}
    assert partitions_materialized(instance, silver_key(CLICKS)) == [hour_key(h1), hour_key(h2)]
    assert partitions_materialized(instance, silver_key(SEARCHES)) == [hour_key(h2)]
    assert partitions_materialized(instance, EVENTS_PER_MINUTE_KEY) == [hour_key(h1), hour_key(h2)]
    assert partitions_materialized(instance, EVENTS_PER_HOUR_KEY) == [hour_key(h1), hour_key(h2)]
    latest = instance.get_latest_materialization_event(silver_key(CLICKS))
    assert latest is not None and latest.run_id == "", "runless: no run per refresh"
    assert latest.asset_materialization is not None
    meta = latest.asset_materialization.metadata
    assert meta["tidelake/refreshed_by"].value == WORKER_SOURCE
    assert meta["status"].value == "rewritten"
    assert meta["rows"].value == 2
    for key, name in [
        (silver_key(CLICKS), EVENT_ID_UNIQUE),
        (silver_key(CLICKS), MATCHES_BRONZE),
        (EVENTS_PER_MINUTE_KEY, EVENTS_MATCH_SILVER),
    ]:
        record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(key, name))
        assert record is not None and record.event is not None, (key, name)
        evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
        assert evaluation.passed and evaluation.blocking, (key, name)


def test_a_second_round_writes_and_records_nothing(
    stream: Stream, instance: dg.DagsterInstance
) -> None:
    stream.produce(CLICKS, current_hour() + timedelta(minutes=1), 2)
    stream.ingest()
    refresh = refresher(stream, instance)
    refresh()
    before = {k: len(partitions_materialized(instance, k)) for k in [silver_key(CLICKS)]}
    version = stream.lake.open(CLICKS.silver_path).version()  # type: ignore[union-attr]

    assert refresh() is False

    assert stream.lake.open(CLICKS.silver_path).version() == version  # type: ignore[union-attr]
    assert {k: len(partitions_materialized(instance, k)) for k in before} == before


def test_the_warn_checks_run_after_gold_at_most_every_interval_over_every_hour_since(
    stream: Stream, instance: dg.DagsterInstance
) -> None:
    ledger_key = dg.AssetCheckKey(silver_key(CLICKS), COMPLETE_VS_LEDGER)

    def ledger_evaluations() -> list[Any]:
        records = instance.event_log_storage.get_asset_check_execution_history(ledger_key, 100)
        return [r.event.dagster_event.event_specific_data for r in records if r.event]  # type: ignore[union-attr]

    h1, h2 = current_hour() - timedelta(hours=1), current_hour()
    stream.produce(CLICKS, h2 + timedelta(minutes=1), 1)
    stream.ingest(CLICKS)
    refresh = refresher(stream, instance, warn_interval=3600)
    refresh()
    assert len(ledger_evaluations()) == 1, "the first round evaluates the WARN checks"
    assert ledger_evaluations()[0].metadata["hours_checked"].value == 1
    stream.produce(CLICKS, h1 + timedelta(minutes=1), 1)
    stream.ingest(CLICKS)
    refresh()
    assert len(ledger_evaluations()) == 1, "not again within the interval"
    assert refresh.pending_warn[CLICKS.name] == {hour_key(h1)}

    refresh.warn_interval = 0
    stream.produce(CLICKS, h2 + timedelta(minutes=2), 1)
    stream.ingest(CLICKS)
    refresh()
    [latest, _] = ledger_evaluations()
    assert latest.severity == dg.AssetCheckSeverity.WARN and not latest.blocking
    assert latest.metadata["hours_checked"].value == 2, "every hour written since the last one"


def test_a_late_event_rematerializes_only_its_own_old_hour(
    stream: Stream, instance: dg.DagsterInstance
) -> None:
    old, now = current_hour() - timedelta(hours=5), current_hour()
    stream.produce(CLICKS, old + timedelta(minutes=10), 1)
    stream.produce(CLICKS, now + timedelta(minutes=1), 1)
    stream.ingest(CLICKS)
    refresh = refresher(stream, instance)
    refresh()
    stream.produce(CLICKS, old + timedelta(minutes=20), 1)  # five hours late
    stream.ingest(CLICKS)

    refresh()

    assert partitions_materialized(instance, silver_key(CLICKS)) == [
        hour_key(old),
        hour_key(now),
        hour_key(old),
    ]
    assert partitions_materialized(instance, EVENTS_PER_MINUTE_KEY)[-1] == hour_key(old)
    assert gold_events(stream) == {CLICKS.name: 3}


def test_a_round_writes_the_newest_hours_first_and_says_when_more_remain(
    stream: Stream, instance: dg.DagsterInstance
) -> None:
    hours = [current_hour() - timedelta(hours=n) for n in (3, 2, 1)]
    for h in hours:
        stream.produce(CLICKS, h + timedelta(minutes=1), 1)
    stream.ingest(CLICKS)
    refresh = refresher(stream, instance, max_hours=2)

    assert refresh() is True, "one hour is left for the next round"
    assert partitions_materialized(instance, silver_key(CLICKS)) == [hour_key(h) for h in hours[1:]]
    assert stale_silver_hours(stream.lake, CLICKS).hours == [hour_key(hours[0])]

    extra = 1
    while refresh():  # fraud_flags has one more hour per click hour (a click's next hour)
        extra += 1
        assert extra <= 3, "bounded rounds work a backlog off"
    assert stale_silver_hours(stream.lake, CLICKS).hours == []
    assert not stale_gold_hours(stream.lake, [CLICKS, SEARCHES]).hours
    assert gold_events(stream) == {CLICKS.name: 3}


def test_max_hours_caps_a_refresh_to_its_newest_stale_hours(stream: Stream) -> None:
    hours = [current_hour() - timedelta(hours=n) for n in (2, 1, 0)]
    for h in hours:
        stream.produce(CLICKS, h + timedelta(minutes=1), 1)
    stream.ingest(CLICKS)

    result = refresh_silver(stream.lake, CLICKS, settings=SETTINGS, max_hours=1)

    assert result.hour_keys == [hour_key(hours[-1])]
    assert not result.complete


def test_a_failed_blocking_silver_check_is_recorded_and_keeps_gold_unbuilt(
    stream: Stream, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream.produce(CLICKS, current_hour() + timedelta(minutes=1), 2)
    stream.ingest(CLICKS)
    real = derive_worker.run_silver_checks

    def failing(*args: Any, **kwargs: Any) -> dict[str, CheckOutcome]:
        outcomes = real(*args, **kwargs)
        return outcomes | {EVENT_ID_UNIQUE: CheckOutcome(False, "1 event_id twice", {})}

    monkeypatch.setattr(derive_worker, "run_silver_checks", failing)

    with pytest.raises(RefreshRoundError, match="event_id_unique"):
        refresher(stream, instance)()

    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(silver_key(CLICKS), EVENT_ID_UNIQUE)
    )
    assert record is not None and record.event is not None
    evaluation = record.event.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert not evaluation.passed
    assert stream.lake.open("gold/events_per_minute") is None, "gold waits for silver to pass"
    monkeypatch.setattr(derive_worker, "run_silver_checks", real)
    refresher(stream, instance)()
    assert gold_events(stream) == {CLICKS.name: 2}


# -- the loop ------------------------------------------------------------------------------------


class Rounds:
    """A round function that counts its calls and can fail on chosen calls."""

    def __init__(self, fail_on: set[int] | None = None, more_on: set[int] | None = None) -> None:
        self.calls = 0
        self.fail_on = fail_on or set()
        self.more_on = more_on or set()
        self.done = threading.Event()

    def __call__(self) -> bool:
        self.calls += 1
        self.done.set()
        if self.calls in self.fail_on:
            raise RefreshRoundError(f"round {self.calls} failed")
        return self.calls in self.more_on


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_notifications_landing_together_share_one_round() -> None:
    rounds = Rounds()
    loop = RefreshLoop(rounds, debounce_seconds=0.3, heartbeat_seconds=60).start()
    try:
        wait_until(lambda: rounds.calls == 1)  # the start-up round
        for _ in range(6):  # six topics' batches committing together
            loop.notify()
        wait_until(lambda: rounds.calls == 2)
        time.sleep(0.6)
        assert rounds.calls == 2, "one round for six notifications"
        assert loop.stats.notifications == 6
    finally:
        loop.stop()
        loop.join(5)


def test_a_round_that_left_hours_stale_is_followed_at_once_by_another() -> None:
    rounds = Rounds(more_on={1, 2})
    loop = RefreshLoop(rounds, debounce_seconds=0.01, heartbeat_seconds=60).start()
    try:
        wait_until(lambda: rounds.calls == 3)
        time.sleep(0.2)
        assert rounds.calls == 3, "no notification needed while hours remain; none after"
    finally:
        loop.stop()
        loop.join(5)


def test_the_heartbeat_runs_a_round_without_any_notification() -> None:
    rounds = Rounds()
    loop = RefreshLoop(rounds, debounce_seconds=0.01, heartbeat_seconds=0.2).start()
    try:
        wait_until(lambda: rounds.calls >= 3)
    finally:
        loop.stop()
        loop.join(5)


def test_a_round_failing_once_backs_off_alerts_once_and_recovers() -> None:
    alerts: list[dict[str, Any]] = []
    rounds = Rounds(fail_on={1})
    loop = RefreshLoop(
        rounds,
        alerts.append,
        debounce_seconds=0.01,
        heartbeat_seconds=60,
        backoff_base=0.3,
        backoff_cap=1.0,
    )
    started = time.monotonic()
    loop.start()
    try:
        wait_until(lambda: rounds.calls == 2)
        assert time.monotonic() - started >= 0.3, "the retry waited for the backoff"
        wait_until(lambda: len(alerts) == 2)
        assert [a["event"] for a in alerts] == ["failed", "recovered"]
        assert "round 1 failed" in alerts[0]["text"]
        assert loop.stats.failures == 1 and loop.stats.streak == 0
    finally:
        loop.stop()
        loop.join(5)


def test_stop_ends_the_loop_after_the_round_in_progress() -> None:
    gate = threading.Event()
    calls: list[float] = []

    def slow() -> bool:
        calls.append(time.monotonic())
        gate.wait(5)
        return False

    loop = RefreshLoop(slow, debounce_seconds=0.01, heartbeat_seconds=60).start()
    wait_until(lambda: calls)
    loop.stop()
    gate.set()
    loop.join(5)
    assert len(calls) == 1
    assert loop._thread is not None and not loop._thread.is_alive()


# -- the sensor's grace and the setting -----------------------------------------------------------


def test_with_the_worker_refreshing_the_sensor_waits_out_the_grace_then_requests(
    clean_env: Path, stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_refresh_sensor import tick

    stream.produce(CLICKS, current_hour() + timedelta(minutes=1), 2)
    stream.ingest(CLICKS)
    defs = build_definitions(lake_env(stream, monkeypatch) | {"TIDELAKE_INGEST_MODEL": "worker"})
    instance = dg.DagsterInstance.ephemeral()

    early = tick(defs, stream, instance)

    assert not early.run_requests
    assert early.skip_reason is not None
    assert "ingestion worker refreshes them" in (early.skip_reason.skip_message or "")
    contracts = list(TOPICS.values())
    staleness = read_staleness(stream.lake, contracts)
    partitions = hourly_partitions(RefreshSettings())
    now = datetime.now(UTC)
    for waited, requests in [(WORKER_GRACE_SECONDS - 1, 0), (WORKER_GRACE_SECONDS + 1, 1)]:
        result = decide_refresh(
            contracts,
            staleness,
            [],
            None,
            partitions,
            now,
            "2025-01-01",
            grace_seconds=WORKER_GRACE_SECONDS,
            waited_seconds=waited,
        )
        assert len(result.run_requests or []) == requests, waited


def test_without_the_worker_refreshing_the_sensor_requests_at_once(
    clean_env: Path, stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_refresh_sensor import tick

    stream.produce(CLICKS, current_hour() + timedelta(minutes=1), 2)
    stream.ingest(CLICKS)
    for env in ({"TIDELAKE_INGEST_MODEL": "tick"}, {"TIDELAKE_WORKER_REFRESH": "false"}):
        defs = build_definitions(lake_env(stream, monkeypatch) | env)
        assert tick(defs, stream, dg.DagsterInstance.ephemeral()).run_requests, env
        sensor = defs.get_sensor_def(REFRESH_SENSOR_NAME)
        assert "grace" not in (sensor.description or "")


def test_worker_refresh_setting_is_a_boolean() -> None:
    assert RefreshSettings.from_env({}).worker_refresh is True
    assert RefreshSettings.from_env({"TIDELAKE_WORKER_REFRESH": "off"}).worker_refresh is False
    with pytest.raises(ConfigError, match="TIDELAKE_WORKER_REFRESH"):
        RefreshSettings.from_env({"TIDELAKE_WORKER_REFRESH": "sometimes"})
