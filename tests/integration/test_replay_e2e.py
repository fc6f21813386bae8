"""Quarantine replay against the real embedded broker and an S3 API, as operators run it.

Records are produced to Kafka, ingested with a small message limit (so some are quarantined as
``oversized``), and ``tidelake quarantine replay`` (a separate process reading only environment
variables) moves them once the limit is raised, while ingestion keeps appending beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from confluent_kafka import Producer
from deltalake import DeltaTable

from tidelake.contracts import QUARANTINE_PATH, TOPICS
from tidelake.ingest import IngestEngine
from tidelake.ingest.replay import replay_quarantine
from tidelake.lake import Lake
from tidelake.quality.bronze import check_offsets_contiguous, check_unique_coordinates
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings

pytestmark = pytest.mark.integration

CLICKS = TOPICS["shop.clicks"]
SMALL_LIMIT = 600


def click(padding: int = 0) -> bytes:
    record = {
        "event_id": str(uuid.uuid4()),
        "event_type": "click",
        "event_time": datetime.now(UTC).isoformat(),
        "user_id": "u1",
        "session_id": "s1",
        "product_id": "p1",
        "element": "buy-button",
    }
    if padding:
        record["debug"] = "x" * padding
    return orjson.dumps(record)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[dict[str, str]]:
    """``AWS_*`` variables of an S3 API server (moto) running in a *separate process*.

    Not the session's in-thread server: measured here with deltalake 1.6.6, a ``DeltaTable``
    opened on it (the log listing) waits the object store's full 180 s timeout, as if the call
    held the GIL the in-thread server needs; the same calls against a server process take
    milliseconds.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidelake.s3server", "--port", "0", "--bucket", "replay"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        env: dict[str, str] = {}
        for line in proc.stderr:
            if "export LAKE_URI=" in line:
                env = dict(kv.split("=", 1) for kv in line.split("export ", 1)[1].split())
                break
        assert env, "the S3 server did not start"
        yield {k: v for k, v in env.items() if k.startswith("AWS_")}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def s3_lake(s3_endpoint: dict[str, str]) -> LakeSettings:
    """A lake under a prefix unique to this test on the out-of-process S3 server."""
    return LakeSettings(
        uri=f"s3://replay/{uuid.uuid4().hex[:12]}",
        aws_region=s3_endpoint["AWS_REGION"],
        aws_endpoint_url=s3_endpoint["AWS_ENDPOINT_URL"],
        aws_access_key_id=s3_endpoint["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_endpoint["AWS_SECRET_ACCESS_KEY"],
        aws_allow_http=True,
    )


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[Producer]:
    p = Producer(kafka_settings.client_config() | {"acks": "all", "linger.ms": 5})
    yield p
    p.flush(10)


def produce(producer: Producer, kafka: KafkaSettings, n: int, big_every: int = 0) -> int:
    """Produce ``n`` clicks, every ``big_every``-th one larger than :data:`SMALL_LIMIT`.

    Returns how many were large.
    """
    topic = CLICKS.physical_topic(kafka.topic_prefix)
    big = [bool(big_every) and i % big_every == 0 for i in range(n)]
    for i in range(n):
        producer.produce(topic, click(1_000 if big[i] else 0), key=f"u{i % 20}".encode())
    assert producer.flush(10) == 0
    return sum(big)


def ingest(lake: Lake, kafka: KafkaSettings) -> None:
    settings = IngestSettings(quiet_seconds=0.5, max_message_bytes=SMALL_LIMIT)
    IngestEngine(lake, kafka, settings).ingest_topic(CLICKS)


def quarantined(lake: Lake, kafka: KafkaSettings) -> pa.Table:
    q = DeltaTable(lake.uri(QUARANTINE_PATH), storage_options=lake.storage_options)
    rows = q.to_pyarrow_table(columns=["_topic", "_partition", "_offset", "error"])
    return rows.filter(pc.equal(rows["_topic"], CLICKS.physical_topic(kafka.topic_prefix)))


def bronze_rows(lake: Lake) -> int:
    table = DeltaTable(lake.uri(CLICKS.bronze_path), storage_options=lake.storage_options)
    return table.to_pyarrow_table(columns=["_offset"]).num_rows


def replay_env(kafka: KafkaSettings, lake: LakeSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KAFKA_", "TIDELAKE"))}
    env.update(
        TIDELAKE_TOPIC_PREFIX=kafka.topic_prefix,
        TIDELAKE_CONSUMER_GROUP=kafka.consumer_group,
        LAKE_URI=lake.uri,
        AWS_ENDPOINT_URL=lake.aws_endpoint_url or "",
        AWS_ACCESS_KEY_ID=lake.aws_access_key_id or "",
        AWS_SECRET_ACCESS_KEY=lake.aws_secret_access_key or "",
        AWS_REGION=lake.aws_region or "us-east-1",
        AWS_ALLOW_HTTP="true",
    )
    return env


def test_the_replay_command_moves_oversized_records_on_s3_once_the_limit_is_raised(
    kafka_settings: KafkaSettings, s3_lake: LakeSettings, producer: Producer
) -> None:
    lake = Lake.from_settings(s3_lake)
    big = produce(producer, kafka_settings, 300, big_every=7)
    ingest(lake, kafka_settings)
    assert quarantined(lake, kafka_settings).num_rows == big
    cmd = [sys.executable, "-m", "tidelake.cli", "quarantine", "replay", "--topic", CLICKS.name]
    env = replay_env(kafka_settings, s3_lake)

    small = subprocess.run(
        [*cmd, "--json"],
        env=env | {"TIDELAKE_MAX_MESSAGE_BYTES": str(SMALL_LIMIT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert small.returncode == 0, small.stderr
    assert json.loads(small.stdout)["moved"] == 0

    dry = subprocess.run([*cmd, "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert f"oversized → now valid: {big}" in dry.stdout
    assert quarantined(lake, kafka_settings).num_rows == big

    done = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["moved"] == big and result["partitions_touched"]
    assert quarantined(lake, kafka_settings).num_rows == 0
    assert bronze_rows(lake) == 300
    assert check_offsets_contiguous(lake, CLICKS, kafka_settings).passed
    assert check_unique_coordinates(lake, CLICKS).passed


def test_a_replay_beside_running_ingestion_loses_and_duplicates_nothing(
    kafka_settings: KafkaSettings, s3_lake: LakeSettings, producer: Producer
) -> None:
    lake = Lake.from_settings(s3_lake)
    big = produce(producer, kafka_settings, 400, big_every=5)
    ingest(lake, kafka_settings)
    errors: list[BaseException] = []
    stop = threading.Event()
    produced_beside = [0]

    def keep_ingesting() -> None:
        try:
            while not stop.is_set():
                produce(producer, kafka_settings, 50)
                produced_beside[0] += 50
                ingest(lake, kafka_settings)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    worker = threading.Thread(target=keep_ingesting)
    worker.start()
    try:
        result = replay_quarantine(
            lake, kafka_settings, IngestSettings(), contracts=[CLICKS], chunk_rows=20
        )
    finally:
        stop.set()
        worker.join(timeout=120)
    assert not errors, errors
    ingest(lake, kafka_settings)  # whatever the worker produced last

    assert result.exit_code == 0, result.render()
    assert result.topics[0].moved == big
    assert quarantined(lake, kafka_settings).num_rows == 0
    assert bronze_rows(lake) == 400 + produced_beside[0]
    assert check_offsets_contiguous(lake, CLICKS, kafka_settings).passed
    assert check_unique_coordinates(lake, CLICKS).passed
