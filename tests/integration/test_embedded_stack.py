"""The embedded stack for real: Tansu broker, moto S3 API, Delta on S3, the Dagster home."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from deltalake import DeltaTable, write_deltalake

from tidelake.broker import EmbeddedBroker
from tidelake.contracts import TOPICS
from tidelake.dagster_home import (
    INGEST_TOPIC_TAG,
    MANAGED_HEADER,
    MAX_CONCURRENT_RUNS,
    dagster_yaml_text,
    ensure_dagster_home,
)
from tidelake.kafka_admin import ensure_topics, topic_partitions, wait_for_broker
from tidelake.lake import Lake
from tidelake.s3server import EmbeddedS3
from tidelake.settings import KafkaSettings, LakeSettings

pytestmark = pytest.mark.integration

CLICKS = TOPICS["shop.clicks"]


def _consume(consumer: Consumer, count: int, timeout: float = 15.0) -> list[Message]:
    """Poll until ``count`` records arrived (Tansu watermarks under-report, so count, don't ask)."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got.append(msg)
    return got


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- broker ------------------------------------------------------------------------------------


def test_session_broker_answers_metadata_requests(kafka_broker: str) -> None:
    metadata = wait_for_broker(kafka_broker, timeout=10)

    assert str(metadata.cluster_id).startswith("tidelake-")
    assert len(metadata.brokers) == 1


def test_every_contract_topic_exists_with_three_partitions(kafka_settings: KafkaSettings) -> None:
    for contract in TOPICS.values():
        physical = contract.physical_topic(kafka_settings.topic_prefix)
        assert topic_partitions(kafka_settings, physical) == [0, 1, 2]


def test_ensure_topics_is_idempotent_and_reports_real_counts(
    kafka_settings: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    counts = ensure_topics(kafka_settings, [CLICKS], partitions=5)

    assert counts == {CLICKS.physical_topic(kafka_settings.topic_prefix): 3}
    assert "not the 5 requested" in caplog.text


def test_topic_partitions_of_a_missing_topic_is_empty_and_does_not_create_it(
    kafka_settings: KafkaSettings,
) -> None:
    missing = f"{kafka_settings.topic_prefix}does.not.exist"

    assert topic_partitions(kafka_settings, missing) == []
    assert topic_partitions(kafka_settings, missing) == []


def test_produce_and_consume_round_trip_with_assign(kafka_settings: KafkaSettings) -> None:
    topic = CLICKS.physical_topic(kafka_settings.topic_prefix)
    producer = Producer(kafka_settings.client_config())
    sent = [f"event-{i}".encode() for i in range(10)]
    for value in sent:
        producer.produce(topic, key=b"user-1", value=value, partition=1)
    assert producer.flush(10) == 0

    consumer = Consumer(
        {
            **kafka_settings.client_config(),
            "group.id": kafka_settings.consumer_group,
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 1, 0)])
        got = _consume(consumer, len(sent))
    finally:
        consumer.close()

    assert [m.value() for m in got] == sent
    assert [m.offset() for m in got] == list(range(10))
    assert {m.key() for m in got} == {b"user-1"}


def test_group_offset_commit_is_readable_back(kafka_settings: KafkaSettings) -> None:
    topic = CLICKS.physical_topic(kafka_settings.topic_prefix)
    conf = {
        **kafka_settings.client_config(),
        "group.id": kafka_settings.consumer_group,
        "enable.auto.commit": False,
    }
    writer = Consumer(conf)
    try:
        writer.commit(
            offsets=[TopicPartition(topic, 0, 7), TopicPartition(topic, 2, 3)],
            asynchronous=False,
        )
    finally:
        writer.close()

    reader = Consumer(conf)
    try:
        committed = reader.committed([TopicPartition(topic, p) for p in (0, 1, 2)], timeout=10)
    finally:
        reader.close()

    offsets = {tp.partition: tp.offset for tp in committed}
    assert offsets[0] == 7
    assert offsets[2] == 3
    assert offsets[1] < 0  # never committed: OFFSET_INVALID


def test_broker_process_is_gone_after_context_exit(tmp_path: Path) -> None:
    with EmbeddedBroker(log_dir=tmp_path, stop_grace=2.0) as broker:
        pid = broker.pid
        assert pid is not None
        wait_for_broker(broker.bootstrap_servers, timeout=10)
        assert broker.is_running()

    assert not broker.is_running()
    assert _pid_gone(pid)
    assert broker.log_path is not None
    assert "ready" in broker.log_path.read_text()


def test_two_brokers_get_distinct_ports_and_clusters() -> None:
    with EmbeddedBroker() as first, EmbeddedBroker() as second:
        assert first.bootstrap_servers != second.bootstrap_servers
        assert wait_for_broker(first.bootstrap_servers, 10).cluster_id == first.cluster_id
        assert wait_for_broker(second.bootstrap_servers, 10).cluster_id == second.cluster_id


def test_broker_can_keep_its_log_on_the_s3_api(s3_server: EmbeddedS3, s3_bucket: str) -> None:
    with EmbeddedBroker(
        storage_engine=f"s3://{s3_bucket}/", env=s3_server.env(s3_bucket, ""), stop_grace=2.0
    ) as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix="s3.")
        topic = CLICKS.physical_topic("s3.")
        ensure_topics(kafka, [CLICKS])
        producer = Producer(kafka.client_config())
        producer.produce(topic, value=b"durable", partition=0)
        assert producer.flush(10) == 0
        del producer  # an open connection makes Tansu linger on SIGTERM
        consumer = Consumer({**kafka.client_config(), "group.id": "g", "enable.auto.commit": False})
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            got = _consume(consumer, 1)
        finally:
            consumer.close()

    assert [m.value() for m in got] == [b"durable"]
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket)["KeyCount"] > 0


# -- S3 API + Delta ----------------------------------------------------------------------------


def test_delta_round_trip_on_the_embedded_s3(s3_lake_settings: LakeSettings) -> None:
    lake = Lake.from_settings(s3_lake_settings)
    uri = lake.uri("bronze/roundtrip")

    write_deltalake(uri, pa.table({"id": [1, 2, 3]}), storage_options=lake.storage_options)
    write_deltalake(uri, pa.table({"id": [4]}), mode="append", storage_options=lake.storage_options)

    table = lake.open("bronze/roundtrip")
    assert table is not None
    assert table.version() == 1
    assert sorted(table.to_pyarrow_table()["id"].to_pylist()) == [1, 2, 3, 4]
    assert lake.storage_options["conditional_put"] == "etag"
    assert lake.open("bronze/missing") is None


def test_delta_round_trip_with_only_explicit_config(
    clean_env: Path, s3_server: EmbeddedS3, s3_bucket: str
) -> None:
    lake = Lake.from_settings(s3_server.lake_settings(s3_bucket, "isolated"))

    write_deltalake(lake.uri("t"), pa.table({"x": ["a"]}), storage_options=lake.storage_options)

    table = DeltaTable(lake.uri("t"), storage_options=lake.storage_options)
    assert table.to_pyarrow_table()["x"].to_pylist() == ["a"]


def test_s3_env_round_trips_through_lake_settings(s3_server: EmbeddedS3, s3_bucket: str) -> None:
    from_env = LakeSettings.from_env(s3_server.env(s3_bucket, "lake"))

    assert from_env == s3_server.lake_settings(s3_bucket, "lake")


def test_each_test_gets_its_own_empty_bucket(s3_server: EmbeddedS3, s3_bucket: str) -> None:
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_local_lake_settings_point_into_the_test_tmp_dir(
    local_lake_settings: LakeSettings, tmp_path: Path
) -> None:
    lake = Lake.from_settings(local_lake_settings)

    write_deltalake(lake.uri("t"), pa.table({"x": [1]}))

    assert (tmp_path / "lake" / "t" / "_delta_log").is_dir()


# -- Dagster home ------------------------------------------------------------------------------


def test_dagster_yaml_loads_as_an_instance_with_the_ingest_limit(dagster_home: Path) -> None:
    from dagster import DagsterInstance, QueuedRunCoordinator

    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.run_monitoring_enabled
        assert not instance.telemetry_enabled
        run_queue = instance.get_concurrency_config().run_queue_config
        assert run_queue is not None
        assert run_queue.max_concurrent_runs == MAX_CONCURRENT_RUNS
        assert run_queue.tag_concurrency_limits == [
            {"key": INGEST_TOPIC_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert instance.root_directory == str(dagster_home)
    finally:
        instance.dispose()


def test_ensure_dagster_home_defaults_to_dot_tidelake(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    home = ensure_dagster_home()

    assert home == tmp_path / ".tidelake" / "dagster"
    assert (home / "dagster.yaml").read_text() == dagster_yaml_text()


def test_ensure_dagster_home_uses_the_dagster_home_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "from-env"))

    assert ensure_dagster_home() == tmp_path / "from-env"


def test_outdated_managed_yaml_is_rewritten_but_user_yaml_is_kept(tmp_path: Path) -> None:
    managed = tmp_path / f"m-{uuid.uuid4().hex[:6]}"
    managed.mkdir()
    (managed / "dagster.yaml").write_text(f"{MANAGED_HEADER}\ntelemetry:\n  enabled: true\n")
    user = tmp_path / "user"
    user.mkdir()
    (user / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")

    ensure_dagster_home(managed)
    ensure_dagster_home(user)

    assert (managed / "dagster.yaml").read_text() == dagster_yaml_text()
    assert (user / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"
