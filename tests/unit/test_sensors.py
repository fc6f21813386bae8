"""Kafka sensors ticked against the in-memory FakeKafka and a temporary local lake."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pytest

from assets.bronze import bronze_key, kafka_key
from resources import FakeKafkaResource, IngestResource, LakeResource, build_engine
from sensors import build_failure_sensor, build_kafka_sensor, decide, failure_payload, sensor_name
from sensors.kafka import RETRY_BACKOFF_SECONDS, RUN_KEY_TAG
from tidelake.contracts import TOPICS, TopicContract
from tidelake.dagster_home import INGEST_TOPIC_TAG
from tidelake.fake_kafka import FakeKafka

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
    started = time.monotonic()

    result = tick(resources(fake, lake_dir))

    assert time.monotonic() - started < 3.0  # sensors must stay cheap
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
    assert "STARTED" in (result.skip_reason.skip_message or "")  # type: ignore[union-attr]


def test_a_failed_run_is_retried_under_a_new_key_after_the_backoff(lake_dir: Path) -> None:
    fake = make_fake()
    produce(fake, CONTRACT, 5)
    res = resources(fake, lake_dir)
    lag = build_engine(res["kafka"], res["lake"], res["ingest"]).lag(CONTRACT)
    key = f"{CONTRACT.name}:{lag.cursor_token()}"
    failed = dg.DagsterRun(
        job_name=JOB,
        status=dg.DagsterRunStatus.FAILURE,
        tags={INGEST_TOPIC_TAG: CONTRACT.name, RUN_KEY_TAG: key},
    )
    record = dg.RunRecord(
        storage_id=1,
        dagster_run=failed,
        create_timestamp=datetime.now(UTC),
        update_timestamp=datetime.now(UTC),
        end_time=1000.0,
    )

    waiting = decide(CONTRACT, lag, record, None, now=1000.0 + RETRY_BACKOFF_SECONDS / 2)
    retry = decide(CONTRACT, lag, record, None, now=1000.0 + RETRY_BACKOFF_SECONDS + 1)

    assert not waiting.run_requests
    [request] = retry.run_requests or []
    assert request.run_key == f"{key}:retry-{failed.run_id[:8]}"


def test_an_unconfigured_broker_skips_with_the_fix(lake_dir: Path, clean_env: Path) -> None:
    from resources import KafkaResource

    res = resources(make_fake(), lake_dir) | {"kafka": KafkaResource()}

    result = tick(res)

    assert not result.run_requests
    assert "KAFKA_BOOTSTRAP_SERVERS" in (result.skip_reason.skip_message or "")  # type: ignore[union-attr]


def test_sensor_names_follow_the_topic_table() -> None:
    assert sensor_name(CONTRACT) == "kafka_shop_clicks_sensor"


def test_the_failure_alert_names_run_job_and_topic() -> None:
    payload = failure_payload(
        "ingest_shop_clicks", "abc123", "boom", {INGEST_TOPIC_TAG: "shop.clicks"}
    )

    assert payload["topic"] == "shop.clicks"
    assert "abc123" in payload["text"]
    assert "ingest_shop_clicks" in payload["text"]
    assert "boom" in payload["text"]


def test_the_failure_sensor_builds_with_its_alert_resource() -> None:
    sensor = build_failure_sensor(dg.DefaultSensorStatus.RUNNING)

    assert "alerts" in sensor.required_resource_keys
