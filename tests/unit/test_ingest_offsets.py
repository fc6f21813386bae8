"""Offsets the log does not hand over as records: markers, retention, re-created topics, gaps an
operator accepts; and the byte budget of a batch."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from deltalake import DeltaTable

from tidelake.contracts import QUARANTINE_PATH, TOPICS
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import IngestEngine, IngestError, app_id
from tidelake.ingest.annotations import read_annotations
from tidelake.ingest.consumer import consumer_config, memory_caps
from tidelake.ingest.errors import OffsetRangeError, TopicRecreatedError
from tidelake.ingest.gaps import GapSpec, accept_gap
from tidelake.lake import Lake
from tidelake.settings import (
    MIN_BATCH_BYTES,
    ConfigError,
    IngestSettings,
    KafkaSettings,
    LakeSettings,
)

TOPIC = TOPICS["shop.clicks"]
GROUP = "offsets-group"


def click(size: int = 0) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "click",
            "event_time": datetime.now(UTC).isoformat(),
            "user_id": "u1",
            "session_id": "s1",
            "product_id": "p1",
            "element": "x" * size or "buy",
        }
    )


@pytest.fixture
def kafka() -> FakeKafka:
    fake = FakeKafka()
    fake.create_topic(TOPIC.name, partitions=2)
    return fake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))


def engine_for(kafka: FakeKafka, lake: Lake, ids: bool = True, **caps: Any) -> IngestEngine:
    return IngestEngine(
        lake,
        KafkaSettings(consumer_group=GROUP),
        IngestSettings(**({"quiet_seconds": 0.05} | caps)),
        consumer_factory=kafka.consumer_factory,
        admin_factory=kafka.admin_factory if ids else None,
    )


def produce(kafka: FakeKafka, partition: int, n: int, size: int = 0) -> None:
    for _ in range(n):
        kafka.produce(TOPIC.name, click(size), key=b"k", partition=partition)


def offsets(lake: Lake, relative: str = TOPIC.bronze_path) -> list[int]:
    table = DeltaTable(lake.uri(relative))
    return sorted(table.to_pyarrow_table(columns=["_offset"])["_offset"].to_pylist())


def position(lake: Lake, partition: int) -> int | None:
    return DeltaTable(lake.uri(TOPIC.bronze_path)).transaction_version(
        app_id(GROUP, TOPIC.name, partition)
    )


# -- transaction markers, aborted and compacted records ------------------------------------------


def test_offsets_without_records_are_passed_and_accounted_as_skipped_not_lost(
    kafka: FakeKafka, lake: Lake
) -> None:
    # Transactional producers: 10 records, a commit marker, 10 aborted records + marker (never
    # delivered under read_committed), 10 records, a trailing commit marker.
    produce(kafka, 0, 10)
    kafka.produce_marker(TOPIC.name, 0)
    kafka.produce_marker(TOPIC.name, 0, count=11)
    produce(kafka, 0, 10)
    kafka.produce_marker(TOPIC.name, 0)
    report = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert report.records == 20
    assert position(lake, 0) == 33, "the position must pass the trailing marker"
    assert report.skipped == {0: [(10, 21), (32, 32)]}
    assert report.skipped_offsets == 13
    assert report.window[0] == (0, 33)
    bronze = DeltaTable(lake.uri(TOPIC.bronze_path))
    recorded = [c.annotation.skipped for c in read_annotations(bronze, None, TOPIC.name)]
    assert {0: [(10, 21), (32, 32)]} in recorded
    # Nothing is pending afterwards: the sensor must not see the marker as lag forever.
    assert not engine_for(kafka, lake).lag(TOPIC, probe_timeout=0.1).pending


def test_a_batch_whose_last_offsets_are_markers_ends_without_waiting_for_its_time_cap(
    kafka: FakeKafka, lake: Lake
) -> None:
    import time

    produce(kafka, 0, 5)
    kafka.produce_marker(TOPIC.name, 0, count=3)
    started = time.monotonic()
    engine_for(kafka, lake, max_batch_seconds=30).ingest_topic(TOPIC)
    assert time.monotonic() - started < 10
    assert position(lake, 0) == 8


# -- retention and re-created topics -------------------------------------------------------------


def test_a_position_below_the_retained_log_is_an_explicit_error_and_other_partitions_flow(
    kafka: FakeKafka, lake: Lake
) -> None:
    produce(kafka, 0, 10)
    produce(kafka, 1, 10)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    produce(kafka, 0, 10)
    produce(kafka, 1, 10)
    kafka.expire(TOPIC.name, 0, before=15)  # offsets 10-14 of partition 0 were never ingested
    with pytest.raises(OffsetRangeError) as caught:
        engine_for(kafka, lake).ingest_topic(TOPIC)
    message = str(caught.value)
    assert "partition 0: stored position 10 is below the first retained offset 15" in message
    assert f"--accept-gap {TOPIC.name}:0:15" in message
    assert position(lake, 0) == 10, "an expired range must never be skipped silently"
    assert position(lake, 1) == 20, "the healthy partition was ingested"
    assert caught.value.report is not None and caught.value.report.records == 10


def test_an_accepted_gap_moves_the_position_visibly_and_the_next_batch_reports_it(
    kafka: FakeKafka, lake: Lake
) -> None:
    produce(kafka, 0, 10)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    produce(kafka, 0, 10)
    kafka.expire(TOPIC.name, 0, before=15)
    engine = engine_for(kafka, lake)
    gap = accept_gap(engine, TOPIC, 0, 15, reason="retention ran out during an outage", by="ops")
    assert (gap.first, gap.last, gap.offsets) == (10, 14, 5)
    assert position(lake, 0) == 15
    bronze = DeltaTable(lake.uri(TOPIC.bronze_path))
    last = read_annotations(bronze, bronze.version() - 1)[-1].annotation
    assert last.kind == "accept_gap" and last.accepted == {0: [(10, 14)]}
    assert last.audit["reason"] == "retention ran out during an outage"
    assert last.audit["by"] == "ops"
    report = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert report.records == 5
    assert [(g["partition"], g["first"], g["last"]) for g in report.accepted_gaps] == [(0, 10, 14)]
    assert report.window[0] == (10, 20), "the checks' window covers the accepted range"
    assert report.since_version is not None and report.since_version < gap.version
    assert offsets(lake) == [*range(10), *range(15, 20)]


@pytest.mark.parametrize(
    ("offset", "reason", "why"),
    [
        (8, "x", "not past the stored position"),
        (18, "x", "the broker still holds offsets 15 and up"),
        (15, " ", "--reason is required"),
    ],
)
def test_an_accepted_gap_must_be_forward_expired_and_explained(
    kafka: FakeKafka, lake: Lake, offset: int, reason: str, why: str
) -> None:
    produce(kafka, 0, 10)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    produce(kafka, 0, 10)
    kafka.expire(TOPIC.name, 0, before=15)
    with pytest.raises(IngestError, match=why):
        accept_gap(engine_for(kafka, lake), TOPIC, 0, offset, reason=reason)
    assert position(lake, 0) == 10


def test_gap_specs_parse_topic_partition_and_offset() -> None:
    assert GapSpec.parse("shop.clicks:2:1500") == GapSpec("shop.clicks", 2, 1500)
    with pytest.raises(ValueError, match="TOPIC:PARTITION:OFFSET"):
        GapSpec.parse("shop.clicks:2")
    with pytest.raises(ValueError, match="integers"):
        GapSpec.parse("shop.clicks:a:1")


def test_a_topic_recreated_under_running_ingestion_is_an_explicit_error_by_topic_id(
    kafka: FakeKafka, lake: Lake
) -> None:
    produce(kafka, 0, 10)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    kafka.recreate_topic(TOPIC.name)
    produce(kafka, 0, 30)  # the new log is already longer than the old position
    with pytest.raises(TopicRecreatedError, match="deleted and re-created"):
        engine_for(kafka, lake).ingest_topic(TOPIC)
    assert position(lake, 0) == 10
    assert offsets(lake) == list(range(10)), "nothing of the new topic moved"


def test_without_topic_ids_a_recreated_shorter_topic_is_caught_by_its_log_end(
    kafka: FakeKafka, lake: Lake
) -> None:
    produce(kafka, 0, 10)
    engine_for(kafka, lake, ids=False).ingest_topic(TOPIC)
    kafka.recreate_topic(TOPIC.name)
    produce(kafka, 0, 3)
    with pytest.raises(OffsetRangeError, match="past the end of the log"):
        engine_for(kafka, lake, ids=False).ingest_topic(TOPIC)
    assert position(lake, 0) == 10


def test_a_position_past_an_under_reported_watermark_is_not_mistaken_for_a_recreated_topic(
    lake: Lake,
) -> None:
    kafka = FakeKafka(watermark_lag=5)
    kafka.create_topic(TOPIC.name, partitions=1)
    produce(kafka, 0, 10)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    assert position(lake, 0) == 10
    report = engine_for(kafka, lake).ingest_topic(TOPIC)  # watermark 5 < position 10: fine
    assert report.records == 0


# -- bytes -------------------------------------------------------------------------------------


def test_a_batch_holds_at_most_half_its_byte_budget_and_commits_by_bytes(
    kafka: FakeKafka, lake: Lake
) -> None:
    budget = 4 * 1024 * 1024
    produce(kafka, 0, 200, size=60_000)  # ~12 MB of values, three times the budget
    report = engine_for(kafka, lake, max_batch_bytes=budget).ingest_topic(TOPIC)
    assert report.records == 200
    assert 0 < report.peak_held_bytes <= budget // 2 + 60_200
    # commit_rows is 250k: only the byte budget (a commit per B/8 = 512 KiB) splits 200 records.
    assert report.commits >= 10, "commits were not cut by bytes"
    assert offsets(lake) == list(range(200))


def test_the_consumer_prefetch_is_capped_by_the_byte_budget() -> None:
    conf = consumer_config({}, "g", 64 * 1024 * 1024)
    caps = memory_caps(64 * 1024 * 1024)
    assert conf["queued.max.messages.kbytes"] == 4 * 1024
    assert conf["fetch.max.bytes"] == caps["fetch_max_bytes"] == 4 * 1024 * 1024
    assert conf["max.partition.fetch.bytes"] <= conf["fetch.max.bytes"]
    assert conf["auto.offset.reset"] == "error"
    assert conf["isolation.level"] == "read_committed"


# -- the kill hook ----------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["", "local", "prod"])
def test_the_kill_hook_is_refused_outside_the_test_environment(environment: str) -> None:
    env = {"TIDELAKE_FAULT_POINT": "between_commits:1", "TIDELAKE_ENV": environment}
    with pytest.raises(ConfigError, match="test hook"):
        IngestSettings.from_env(env)
    assert IngestSettings.from_env(env | {"TIDELAKE_ENV": "test"}).fault_point == (
        "between_commits:1"
    )


def test_quarantine_is_not_needed_for_markers_only(kafka: FakeKafka, lake: Lake) -> None:
    kafka.produce_marker(TOPIC.name, 1, count=4)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    assert position(lake, 1) == 4
    assert DeltaTable(lake.uri(QUARANTINE_PATH)).to_pyarrow_table().num_rows == 0


@pytest.mark.parametrize("budget", [MIN_BATCH_BYTES, 64 * 1024 * 1024, 8 * 1024 * 1024 * 1024])
def test_librdkafka_accepts_the_consumer_settings_of_every_allowed_budget(budget: int) -> None:
    # Regression: budgets under ~15 MiB gave a fetch.max.bytes below librdkafka's
    # message.max.bytes, and the real consumer refused to start.
    from confluent_kafka import Consumer

    consumer = Consumer(consumer_config({"bootstrap.servers": "127.0.0.1:9"}, "g", budget))
    consumer.close()
