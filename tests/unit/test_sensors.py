"""Kafka sensors of every ingestion model, ticked against the in-memory FakeKafka and a
temporary local lake."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pytest

from assets.bronze import BRONZE_CHECK_NAMES, bronze_key, kafka_key
from resources import FakeKafkaResource, IngestResource, LakeResource, build_engine
from sensors import (
    ALL_TOPICS_TAG_VALUE,
    OBSERVE_INTERVAL_SECONDS,
    build_kafka_sensor,
    build_lag_sensor,
    build_pending_topics_sensor,
    decide,
    decide_pending,
    pending_run_key,
    retry_delay,
    run_key,
    sensor_name,
)
from sensors.kafka import RETRY_BACKOFF_BASE_SECONDS, RETRY_BACKOFF_CAP_SECONDS, RUN_KEY_TAG
from sensors.runs import STREAK_LOOKBACK_RUNS
from tidelake.contracts import TOPICS, TopicContract
from tidelake.dagster_home import INGEST_TOPIC_TAG
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import TopicLag

PREFIX = "unit."
CONTRACT = TOPICS["shop.clicks"]
JOB = "ingest_shop_clicks"


def produce(fake: FakeKafka, contract: TopicContract, n: int) -> None:
    now = datetime.now(UTC).isoformat()
    for i in range(n):
        values: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "event_type": "click",
            "event_time": now,
        } | {f.name: f"{f.name}-{i}" for f in contract.fields}
        fake.produce(contract.physical_topic(PREFIX), orjson.dumps(values), key=f"u{i}".encode())


def make_fake(watermark_lag: int = 0) -> FakeKafka:
    fake = FakeKafka(watermark_lag=watermark_lag)
    fake.create_topic(CONTRACT.physical_topic(PREFIX), partitions=3)
    return fake


def resources(fake: FakeKafka, lake_dir: Path) -> dict[str, Any]:
    return {
        "kafka": FakeKafkaResource(fake, topic_prefix=PREFIX, consumer_group="unit"),
        "lake": LakeResource(uri=str(lake_dir)),
        "ingest": IngestResource(quiet_seconds=0.05),
    }


def tick(
    res: dict[str, Any], cursor: str | None = None, instance: dg.DagsterInstance | None = None
) -> dg.SensorResult:
    sensor = build_kafka_sensor(CONTRACT, JOB, dg.DefaultSensorStatus.RUNNING)
    context = dg.build_sensor_context(
        instance=instance or dg.DagsterInstance.ephemeral(), cursor=cursor, resources=res
    )
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def drain(res: dict[str, Any]) -> None:
    build_engine(res["kafka"], res["lake"], res["ingest"]).ingest_topic(CONTRACT)


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


def test_pending_records_request_exactly_one_run_named_by_topic_and_offsets(
    lake_dir: Path,
) -> None:
    fake = make_fake()
    produce(fake, CONTRACT, 12)

    result = tick(resources(fake, lake_dir))

    [request] = result.run_requests or []
    ends = fake.end_offsets(CONTRACT.physical_topic(PREFIX))
    token = ",".join(f"{p}:start-{end}" for p, end in sorted(ends.items()))
    assert request.run_key == f"shop.clicks:{token}"
    assert request.tags == {INGEST_TOPIC_TAG: "shop.clicks"}
    assert request.asset_selection == [bronze_key(CONTRACT)]
    assert not request.run_config  # payloads never travel through run config
    assert result.cursor == token


def test_the_tick_observes_lag_on_the_kafka_asset(lake_dir: Path) -> None:
    fake = make_fake()
    produce(fake, CONTRACT, 12)

    result = tick(resources(fake, lake_dir))

    [observation] = result.asset_events
    assert isinstance(observation, dg.AssetObservation)
    assert observation.asset_key == kafka_key(CONTRACT)
    meta = {k: v.value for k, v in observation.metadata.items()}
    assert meta["lag"] == 12
    assert sum(p["lag"] for p in meta["per-partition"].values()) == 12
    assert meta["oldest_pending_age_seconds"] is not None
    assert meta["oldest_pending_age_seconds"] >= 0


def test_nothing_pending_skips_and_moves_the_cursor(lake_dir: Path) -> None:
    fake = make_fake()
    produce(fake, CONTRACT, 12)
    res = resources(fake, lake_dir)
    drain(res)

    result = tick(res, cursor="0:start-4,1:start-4,2:start-4")

    assert not result.run_requests
    assert result.skip_reason is not None
    assert "nothing pending" in (result.skip_reason.skip_message or "")
    assert result.cursor is not None
    assert "start" not in result.cursor  # positions now come from bronze
    # The lag changed since the cursor, so it is observed (lag 0).
    [observation] = result.asset_events
    assert observation.metadata["lag"].value == 0


def test_an_idle_topic_is_not_observed_again(lake_dir: Path) -> None:
    fake = make_fake()
    produce(fake, CONTRACT, 3)
    res = resources(fake, lake_dir)
    drain(res)
    first = tick(res, cursor=None)

    second = tick(res, cursor=first.cursor)

    assert not second.run_requests
    assert second.asset_events == []


def test_an_under_reported_watermark_still_requests_a_run(lake_dir: Path) -> None:
    # The broker hides the last records of each partition from the watermark; the probe finds them.
    fake = make_fake(watermark_lag=100)
    produce(fake, CONTRACT, 9)

    result = tick(resources(fake, lake_dir))

    assert len(result.run_requests or []) == 1
    assert all(p.endswith("-0") for p in (result.cursor or "").split(","))  # watermark says 0
    assert result.asset_events[0].metadata["lag"].value >= 1


def test_a_run_in_flight_for_the_topic_suppresses_a_new_request(lake_dir: Path) -> None:
    fake = make_fake()
    produce(fake, CONTRACT, 5)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_run(
        dg.DagsterRun(
            job_name=JOB,
            status=dg.DagsterRunStatus.STARTED,
            tags={INGEST_TOPIC_TAG: CONTRACT.name},
        )
    )

    result = tick(resources(fake, lake_dir), instance=instance)

    assert not result.run_requests
    assert "STARTED" in reason(result)


def pending_lag(lake_dir: Path) -> tuple[dict[str, Any], TopicLag]:
    fake = make_fake()
    produce(fake, CONTRACT, 5)
    res = resources(fake, lake_dir)
    return res, build_engine(res["kafka"], res["lake"], res["ingest"]).lag(CONTRACT)


def run_record(
    status: dg.DagsterRunStatus, end_time: float | None = None, key: str | None = None
) -> dg.RunRecord:
    tags = {INGEST_TOPIC_TAG: CONTRACT.name} | ({RUN_KEY_TAG: key} if key else {})
    return dg.RunRecord(
        storage_id=1,
        dagster_run=dg.DagsterRun(job_name=JOB, status=status, tags=tags),
        create_timestamp=datetime.now(UTC),
        update_timestamp=datetime.now(UTC),
        end_time=end_time,
    )


def failures(n: int, latest_end: float = 1000.0) -> list[dg.RunRecord]:
    """``n`` failed runs, newest first, one a minute apart, the newest ending at ``latest_end``."""
    return [run_record(FAILURE, end_time=latest_end - 60.0 * i) for i in range(n)]


def reason(result: dg.SensorResult) -> str:
    return (result.skip_reason.skip_message or "") if result.skip_reason else ""


def waits(result: dg.SensorResult) -> bool:
    return not result.run_requests and "retrying in" in reason(result)


FAILURE = dg.DagsterRunStatus.FAILURE
SUCCESS = dg.DagsterRunStatus.SUCCESS
CANCELED = dg.DagsterRunStatus.CANCELED


def test_the_backoff_doubles_from_15_seconds_to_a_5_minute_cap() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 5, 6, 10, 1000)] == [15, 30, 60, 240, 300, 300, 300]
    assert retry_delay(0) == 0
    assert (RETRY_BACKOFF_BASE_SECONDS, RETRY_BACKOFF_CAP_SECONDS) == (15.0, 300.0)


@pytest.mark.parametrize(("streak", "wait"), [(1, 15.0), (2, 30.0), (5, 240.0), (10, 300.0)])
def test_the_nth_failure_in_a_row_is_retried_only_after_its_backoff(
    lake_dir: Path, streak: int, wait: float
) -> None:
    _, lag = pending_lag(lake_dir)
    runs = failures(streak)

    early = decide(CONTRACT, lag, runs, None, now=1000.0 + wait - 1)
    due = decide(CONTRACT, lag, runs, None, now=1000.0 + wait + 0.5)

    assert waits(early)
    message = reason(early)
    assert f"{streak} failed run(s) in a row" in message
    assert "retrying in 1s" in message
    assert len(due.run_requests or []) == 1


def test_the_backoff_is_overridable_for_tests(lake_dir: Path) -> None:
    _, lag = pending_lag(lake_dir)

    result = decide(
        CONTRACT, lag, failures(3), None, now=1001.0, backoff_base_seconds=1, backoff_cap_seconds=2
    )

    assert len(result.run_requests or []) == 0  # min(1 * 4, 2) = 2 s > 1 s elapsed
    assert "backoff 2s" in reason(result)


def test_a_success_ends_the_failure_streak(lake_dir: Path) -> None:
    _, lag = pending_lag(lake_dir)
    runs = [*failures(2), run_record(SUCCESS, end_time=800.0), *failures(5, latest_end=700.0)]

    waiting = decide(CONTRACT, lag, runs, None, now=1020.0)
    retry = decide(CONTRACT, lag, runs, None, now=1031.0)

    # Counting the older failures too would mean the 5-minute cap, not 30 s.
    assert "2 failed run(s) in a row" in reason(waiting)
    assert len(retry.run_requests or []) == 1


def test_after_a_success_a_request_uses_the_plain_offsets_key(lake_dir: Path) -> None:
    _, lag = pending_lag(lake_dir)

    result = decide(CONTRACT, lag, [run_record(SUCCESS, 900.0), *failures(3)], None, now=1000.0)

    [request] = result.run_requests or []
    assert request.run_key == run_key(CONTRACT, lag)


def test_a_cancelled_run_neither_breaks_nor_extends_the_streak(lake_dir: Path) -> None:
    _, lag = pending_lag(lake_dir)
    cancelled = run_record(CANCELED, end_time=1010.0)
    [newest, older] = failures(2)
    for runs in ([cancelled, newest, older], [newest, cancelled, older]):
        waiting = decide(CONTRACT, lag, runs, None, now=1020.0)
        retry = decide(CONTRACT, lag, runs, None, now=1031.0)

        # Two failures: 30 s after the newest failure (not after the cancel, not 15 s).
        assert "2 failed run(s) in a row" in reason(waiting)
        assert len(retry.run_requests or []) == 1


def test_a_cancelled_latest_run_gets_a_new_key_for_the_same_offsets(lake_dir: Path) -> None:
    _, lag = pending_lag(lake_dir)
    cancelled = run_record(CANCELED, end_time=1000.0, key=run_key(CONTRACT, lag))

    result = decide(CONTRACT, lag, [cancelled, run_record(SUCCESS, 900.0)], None, now=1001.0)

    # Dagster drops a request whose key was used; the cancelled run used the plain one.
    [request] = result.run_requests or []
    assert request.run_key == f"{run_key(CONTRACT, lag)}:retry-{cancelled.dagster_run.run_id}"


def test_failures_on_other_offsets_are_still_one_streak(lake_dir: Path) -> None:
    _, lag = pending_lag(lake_dir)
    runs = [
        run_record(FAILURE, end_time=1000.0 - 60 * i, key=f"{CONTRACT.name}:0:{i}-{i + 1}")
        for i in range(3)
    ]

    waiting = decide(CONTRACT, lag, runs, None, now=1050.0)

    assert waits(waiting)
    assert "3 failed run(s) in a row" in reason(waiting)


def test_the_retry_key_is_new_and_the_same_on_every_tick_for_one_failure(lake_dir: Path) -> None:
    _, lag = pending_lag(lake_dir)
    key = run_key(CONTRACT, lag)
    failed = run_record(FAILURE, end_time=1000.0, key=key)

    first = decide(CONTRACT, lag, [failed], None, now=1016.0)
    again = decide(CONTRACT, lag, [failed], None, now=1100.0)
    [request] = first.run_requests or []
    retry_failed = run_record(FAILURE, end_time=1200.0, key=request.run_key)
    after_next = decide(CONTRACT, lag, [retry_failed, failed], None, now=1300.0)

    assert request.run_key == f"{key}:retry-{failed.dagster_run.run_id}"
    assert [r.run_key for r in again.run_requests or []] == [request.run_key]  # Dagster dedupes
    [next_request] = after_next.run_requests or []
    assert next_request.run_key not in (key, request.run_key)


def failing_job() -> dg.JobDefinition:
    @dg.op
    def broker_unreachable() -> None:
        raise RuntimeError("broker unreachable")

    @dg.job(name=JOB)
    def ingest() -> None:
        broker_unreachable()

    return ingest


def test_the_sensor_backs_off_by_the_streak_in_the_instance(lake_dir: Path) -> None:
    res, lag = pending_lag(lake_dir)
    instance = dg.DagsterInstance.ephemeral()
    job = failing_job()
    for _ in range(2):
        job.execute_in_process(
            instance=instance, tags={INGEST_TOPIC_TAG: CONTRACT.name}, raise_on_error=False
        )
    [latest, _] = instance.get_runs(filters=dg.RunsFilter(tags={INGEST_TOPIC_TAG: CONTRACT.name}))

    def tick_with(base: float) -> dg.SensorResult:
        sensor = build_kafka_sensor(
            CONTRACT, JOB, dg.DefaultSensorStatus.RUNNING, backoff_base_seconds=base
        )
        result = sensor(dg.build_sensor_context(instance=instance, resources=res))
        assert isinstance(result, dg.SensorResult)
        return result

    held = tick_with(base=3600.0)
    due = tick_with(base=0.0)

    assert "2 failed run(s) in a row" in reason(held)
    assert latest.run_id in reason(held)
    [request] = due.run_requests or []
    assert request.run_key == f"{run_key(CONTRACT, lag)}:retry-{latest.run_id}"


def test_the_sensor_reads_a_bounded_window_of_runs(lake_dir: Path) -> None:
    res, _ = pending_lag(lake_dir)
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(STREAK_LOOKBACK_RUNS + 5):
        instance.add_run(
            dg.DagsterRun(job_name=JOB, status=FAILURE, tags={INGEST_TOPIC_TAG: CONTRACT.name})
        )

    result = tick(res, instance=instance)

    assert not result.run_requests
    assert f"{STREAK_LOOKBACK_RUNS}+ failed run(s)" in reason(result)


def test_an_unconfigured_broker_skips_with_the_fix(lake_dir: Path, clean_env: Path) -> None:
    from resources import KafkaResource

    res = resources(make_fake(), lake_dir) | {"kafka": KafkaResource()}

    result = tick(res)

    assert not result.run_requests
    assert "KAFKA_BOOTSTRAP_SERVERS" in reason(result)


def test_sensor_names_follow_the_topic_table() -> None:
    assert sensor_name(CONTRACT) == "kafka_shop_clicks_sensor"


# -- the tick model: one sensor, one run per tick ----------------------------------------------

PURCHASES = TOPICS["shop.purchases"]
SEARCHES = TOPICS["shop.searches"]
TICK_CONTRACTS = [CONTRACT, PURCHASES, SEARCHES]


def tick_fake() -> FakeKafka:
    fake = FakeKafka()
    for contract in TICK_CONTRACTS:
        fake.create_topic(contract.physical_topic(PREFIX), partitions=3)
    return fake


def tick_all(
    res: dict[str, Any],
    cursor: str | None = None,
    instance: dg.DagsterInstance | None = None,
    contracts: list[TopicContract] = TICK_CONTRACTS,
) -> dg.SensorResult:
    sensor = build_pending_topics_sensor(contracts, ALL_JOB, dg.DefaultSensorStatus.RUNNING)
    context = dg.build_sensor_context(
        instance=instance or dg.DagsterInstance.ephemeral(), cursor=cursor, resources=res
    )
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def all_topics_run(status: dg.DagsterRunStatus, end_time: float | None = None) -> dg.RunRecord:
    return dg.RunRecord(
        storage_id=1,
        dagster_run=dg.DagsterRun(
            job_name=ALL_JOB, status=status, tags={INGEST_TOPIC_TAG: ALL_TOPICS_TAG_VALUE}
        ),
        create_timestamp=datetime.now(UTC),
        update_timestamp=datetime.now(UTC),
        end_time=end_time,
    )


def pending_lags(lake_dir: Path) -> list[tuple[TopicContract, TopicLag]]:
    fake = tick_fake()
    produce(fake, CONTRACT, 4)
    produce(fake, PURCHASES, 6)
    res = resources(fake, lake_dir)
    engine = build_engine(res["kafka"], res["lake"], res["ingest"])
    return [(c, engine.lag(c)) for c in TICK_CONTRACTS]


ALL_JOB = "ingest_bronze"


def test_the_tick_requests_one_run_selecting_exactly_the_pending_topics(lake_dir: Path) -> None:
    fake = tick_fake()
    produce(fake, CONTRACT, 4)
    produce(fake, PURCHASES, 6)
    res = resources(fake, lake_dir)

    result = tick_all(res)

    [request] = result.run_requests or []
    assert request.asset_selection == [bronze_key(CONTRACT), bronze_key(PURCHASES)]
    assert request.tags == {INGEST_TOPIC_TAG: ALL_TOPICS_TAG_VALUE}
    assert set(request.asset_check_keys or []) == {
        dg.AssetCheckKey(bronze_key(c), n)
        for c in (CONTRACT, PURCHASES)
        for n in BRONZE_CHECK_NAMES
    }  # the per-batch checks only, never the audit
    assert not request.run_config
    engine = build_engine(res["kafka"], res["lake"], res["ingest"])
    clicks, purchases = engine.lag(CONTRACT), engine.lag(PURCHASES)
    # Both topics' offsets are in the key, so new records on either make a new run.
    assert request.run_key == f"{run_key(CONTRACT, clicks)};{run_key(PURCHASES, purchases)}"
    assert request.run_key == pending_run_key([(PURCHASES, purchases), (CONTRACT, clicks)])


def test_the_tick_observes_every_topic_and_remembers_each_ones_lag(lake_dir: Path) -> None:
    fake = tick_fake()
    produce(fake, CONTRACT, 4)
    res = resources(fake, lake_dir)

    first = tick_all(res)
    second = tick_all(res, cursor=first.cursor)

    assert {e.asset_key for e in first.asset_events} == {kafka_key(c) for c in TICK_CONTRACTS}
    # The idle topics did not change: only the pending one is observed again.
    assert [e.asset_key for e in second.asset_events] == [kafka_key(CONTRACT)]
    assert second.cursor == first.cursor


def test_nothing_pending_in_any_topic_requests_no_run(lake_dir: Path) -> None:
    fake = tick_fake()
    produce(fake, CONTRACT, 4)
    res = resources(fake, lake_dir)
    drain(res)

    result = tick_all(res)

    assert not result.run_requests
    assert "nothing pending in 3 topic(s)" in reason(result)


def test_an_all_topics_run_in_flight_suppresses_the_tick(lake_dir: Path) -> None:
    fake = tick_fake()
    produce(fake, CONTRACT, 4)
    instance = dg.DagsterInstance.ephemeral()
    run = instance.add_run(
        dg.DagsterRun(
            job_name=ALL_JOB,
            status=dg.DagsterRunStatus.STARTING,
            tags={INGEST_TOPIC_TAG: ALL_TOPICS_TAG_VALUE},
        )
    )

    result = tick_all(resources(fake, lake_dir), instance=instance)

    assert not result.run_requests
    assert f"run {run.run_id} is STARTING" in reason(result)
    assert result.asset_events  # the lag is still observed while the run is in flight


def test_failed_all_topics_runs_back_off_exponentially_then_retry_with_a_new_key(
    lake_dir: Path,
) -> None:
    lags = pending_lags(lake_dir)
    newest, older = all_topics_run(FAILURE, 1000.0), all_topics_run(FAILURE, 940.0)

    waiting = decide_pending(lags, [newest, older], None, now=1029.0)
    due = decide_pending(lags, [newest, older], None, now=1030.5)

    assert not waiting.run_requests
    assert "2 failed run(s) in a row" in reason(waiting)
    assert "backoff 30s" in reason(waiting)
    [request] = due.run_requests or []
    pending = [(c, lag) for c, lag in lags if lag.pending]
    assert request.run_key == f"{pending_run_key(pending)}:retry-{newest.dagster_run.run_id}"


def test_after_a_successful_all_topics_run_the_key_is_the_plain_offsets(lake_dir: Path) -> None:
    lags = pending_lags(lake_dir)

    result = decide_pending(lags, [all_topics_run(SUCCESS, 990.0)], None, now=1000.0)

    [request] = result.run_requests or []
    assert request.run_key == pending_run_key([(c, lag) for c, lag in lags if lag.pending])


def test_the_tick_sensor_backs_off_by_the_all_topics_runs_in_the_instance(
    lake_dir: Path,
) -> None:
    fake = tick_fake()
    produce(fake, CONTRACT, 4)
    res = resources(fake, lake_dir)
    instance = dg.DagsterInstance.ephemeral()
    failing_job().execute_in_process(
        instance=instance, tags={INGEST_TOPIC_TAG: ALL_TOPICS_TAG_VALUE}, raise_on_error=False
    )
    # A per-topic run is another stream: its failure must not hold the tick.
    failing_job().execute_in_process(
        instance=instance, tags={INGEST_TOPIC_TAG: SEARCHES.name}, raise_on_error=False
    )

    result = tick_all(res, instance=instance)

    assert not result.run_requests
    assert "1 failed run(s) in a row" in reason(result)


def test_a_topic_whose_lag_cannot_be_read_is_left_out_and_named(lake_dir: Path) -> None:
    fake = FakeKafka()
    fake.create_topic(CONTRACT.physical_topic(PREFIX), partitions=3)  # purchases does not exist
    produce(fake, CONTRACT, 4)
    res = resources(fake, lake_dir)
    drain(res)
    contracts = [CONTRACT, PURCHASES]

    idle = tick_all(res, contracts=contracts)
    produce(fake, CONTRACT, 2)
    busy = tick_all(res, cursor=idle.cursor, contracts=contracts)

    assert PURCHASES.physical_topic(PREFIX) in reason(idle)
    [request] = busy.run_requests or []
    assert request.asset_selection == [bronze_key(CONTRACT)]


def test_a_tick_request_runs_exactly_the_selected_topics_in_one_process(lake_dir: Path) -> None:
    from assets.bronze import build_bronze_layer
    from assets.bronze.audit import build_audit_checks
    from pipeline_defs.jobs import all_topics_job

    fake = tick_fake()
    produce(fake, CONTRACT, 4)
    produce(fake, PURCHASES, 6)
    res = resources(fake, lake_dir)
    [request] = tick_all(res).run_requests or []
    specs, bronze = build_bronze_layer(TICK_CONTRACTS)
    defs = dg.Definitions(
        assets=[*specs, *bronze],
        asset_checks=build_audit_checks(TICK_CONTRACTS),
        jobs=[all_topics_job(TICK_CONTRACTS)],
        resources=res,
    )
    job = defs.resolve_job_def(ALL_JOB)

    # What the daemon launches for the request: the job subset of its assets and checks.
    subset = job.get_subset(
        asset_selection=set(request.asset_selection or []),
        asset_check_selection=set(request.asset_check_keys or []),
    )
    result = subset.execute_in_process(tags=request.tags)

    assert job.executor_def is dg.in_process_executor
    materialized = {m.asset_key for m in result.get_asset_materialization_events() if m.asset_key}
    assert {k for k in materialized if k.path[0] == "bronze"} == {
        bronze_key(CONTRACT),
        bronze_key(PURCHASES),
    }
    # The per-batch checks of the selected topics ran; the whole-table audit did not.
    checks = {(e.asset_key, e.check_name) for e in result.get_asset_check_evaluations()}
    assert checks == {(bronze_key(c), n) for c in (CONTRACT, PURCHASES) for n in BRONZE_CHECK_NAMES}
    engine = build_engine(res["kafka"], res["lake"], res["ingest"])
    assert not engine.lag(CONTRACT).pending and not engine.lag(PURCHASES).pending


# -- the worker model: observe only -------------------------------------------------------------


def test_the_worker_models_sensor_observes_lag_and_never_requests_a_run(lake_dir: Path) -> None:
    fake = make_fake()
    produce(fake, CONTRACT, 7)
    sensor = build_lag_sensor(CONTRACT, dg.DefaultSensorStatus.RUNNING)
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources=resources(fake, lake_dir)
    )

    result = sensor(context)

    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    assert "the ingestion worker ingests this topic" in reason(result)
    [observation] = result.asset_events
    assert observation.asset_key == kafka_key(CONTRACT)
    assert observation.metadata["lag"].value == 7
    assert sensor.minimum_interval_seconds == OBSERVE_INTERVAL_SECONDS
    assert not sensor.targets
