"""The embedded stack for real: Tansu broker, moto S3 API, Delta on S3, the Dagster home."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
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


# -- tidelake dev --headless --no-simulator ------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """``(ppid, pgid, state)`` of a process from /proc, or None when it is gone."""
    try:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(after_name[1]), int(after_name[2]), after_name[0]


def _alive(pid: int) -> bool:
    """Running (a zombie has exited; only its parent has not reaped it yet)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[2] != "Z"


def _descendants(root: int) -> dict[int, tuple[int, str]]:
    """Every live descendant of ``root``: pid → (process group, command line)."""
    stats = {
        int(e.name): stat
        for e in Path("/proc").iterdir()
        if e.name.isdigit() and (stat := _proc_stat(int(e.name))) is not None
    }
    found: dict[int, tuple[int, str]] = {}
    todo = [pid for pid, stat in stats.items() if stat[0] == root]
    while todo:
        pid = todo.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found[pid] = (stats[pid][1], cmdline)
        todo.extend(child for child, stat in stats.items() if stat[0] == pid)
    return found


def _live_in_groups(groups: set[int]) -> list[int]:
    """Running processes whose process group is one of ``groups``."""
    return [
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit()
        and (stat := _proc_stat(int(e.name))) is not None
        and stat[1] in groups
        and stat[2] != "Z"
    ]


@pytest.mark.slow
def test_headless_stack_lands_records_through_the_worker_in_bronze_and_dagster_and_leaves_nothing(
    kafka_settings: KafkaSettings, local_lake_settings: LakeSettings, tmp_path: Path
) -> None:
    from confluent_kafka import Producer
    from dagster import AssetKey, DagsterInstance
    from test_ingest_e2e import ingest_env, produce_clicks

    home = ensure_dagster_home(tmp_path / "dagster_home")
    # TIDELAKE_ENV=local, as `make dev` runs: its sensors start RUNNING (under `test` they are
    # stopped), so the derived layers must build themselves.
    env = ingest_env(
        kafka_settings,
        local_lake_settings,
        DAGSTER_HOME=str(home),
        TIDELAKE_ENV="local",
        TIDELAKE_WAREHOUSE_PATH=str(tmp_path / "warehouse.duckdb"),
    )
    output = tmp_path / "dev.log"
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True
    )
    with output.open("wb") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", "tidelake.cli", "dev", "--headless", "--no-simulator"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    seen: dict[int, str] = {}
    instance = DagsterInstance.from_config(str(home))
    try:
        producer = Producer(kafka_settings.client_config())
        produce_clicks(producer, kafka_settings, 300, bad_every=10)
        lake = Lake.from_settings(local_lake_settings)
        deadline = time.monotonic() + 180
        rows = 0
        records = []
        while time.monotonic() < deadline and dev.poll() is None:
            seen |= _descendants(dev.pid)
            result = instance.fetch_materializations(AssetKey(["bronze", "shop_clicks"]), 100)
            records = list(result.records)
            rows = sum(
                int(r.asset_materialization.metadata["rows"].value)  # type: ignore[union-attr]
                for r in records
            )
            if rows >= 270 and "SENSOR" in instance.get_daemon_heartbeats():
                break
            time.sleep(0.5)
        assert dev.poll() is None, output.read_text()[-3000:]
        assert rows == 270, f"materialized rows {rows}\n{output.read_text()[-3000:]}"
        # Runless: recorded by the worker, not by a run per batch.
        assert records and all(r.run_id == "" for r in records)
        table = lake.open("bronze/shop_clicks")
        assert table is not None and table.to_pyarrow_table().num_rows == 270
        assert "SENSOR" in instance.get_daemon_heartbeats(), "the daemon never ran its sensors"
        # Silver and gold follow on their own (touched_partitions_sensor), then the marts
        # (warehouse_sensor, at most once a minute).
        gold, kpis = AssetKey(["gold", "events_per_minute"]), AssetKey(["marts", "daily_kpis"])
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not (
            instance.fetch_materializations(gold, 1).records
            and instance.fetch_materializations(kpis, 1).records
        ):
            seen |= _descendants(dev.pid)
            time.sleep(1.0)
        silver = lake.open("silver/shop_clicks")
        per_minute = lake.open("gold/events_per_minute")
        assert silver is not None and per_minute is not None, output.read_text()[-3000:]
        assert silver.to_pyarrow_table().num_rows == 270
        assert sum(per_minute.to_pyarrow_table(columns=["events"])["events"].to_pylist()) == 270
        assert instance.fetch_materializations(kpis, 1).records, "the marts were not built"
        seen |= _descendants(dev.pid)
        commands = [cmdline for _, cmdline in seen.values()]
        assert any("ingest --follow" in c for c in commands), commands
        assert any("dagster-daemon run" in c for c in commands), commands
        assert not any("webserver" in c or " dev -w" in c for c in commands), commands
    finally:
        instance.dispose()
        dev.send_signal(signal.SIGTERM)
        code = dev.wait(180)
    text = output.read_text()
    assert code == 0, text[-3000:]
    assert re.search(r"worker \(pid \d+\) stopped: exit status 0", text), text[-3000:]
    # Every child and grandchild is gone, and nothing is left in any of their process groups.
    groups = {pgid for pgid, _ in seen.values()} | {dev.pid}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        any(_alive(pid) for pid in seen) or _live_in_groups(groups)
    ):
        time.sleep(0.2)
    assert [seen[pid] for pid in seen if _alive(pid)] == []
    assert _live_in_groups(groups) == []
    # ... and nothing else was touched.
    assert bystander.poll() is None
    bystander.kill()
    bystander.wait()
