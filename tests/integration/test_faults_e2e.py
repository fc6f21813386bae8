"""Exactly once under real faults: S3 errors, resets and latency from a proxy, a broker killed.

The lake is ``s3://<bucket>/lake`` on the embedded S3 API, reached by ``tidelake ingest`` only
through a :class:`~tidelake.testing.FaultProxy` (``AWS_ENDPOINT_URL`` points at the proxy). The
test produces a few thousand clicks, some malformed, then runs ``tidelake ingest --once`` as a
subprocess, with small commits, again and again while the proxy injects faults, until bronze's
stored positions reach the end of every partition. Then it reads the tables directly (not through
the proxy): every offset is in bronze or quarantine exactly once. Each test also asserts that its
faults really happened and that some run saw them (failed, or retried a write).

What the engine sees of each fault (measured with deltalake 1.6 / object_store 0.13, see
docs/ARCHITECTURE.md "Fault tests"): a 5xx is retried by the object store client itself, up to
10 times in about 3 s, so only a longer outage reaches the engine; a reset or a lost response
on a data-file PUT is retried too, but on a ``_delta_log`` commit PUT (a conditional create,
not idempotent) it surfaces at once as ``OSError: Generic S3 error``, and a lost response means
the commit *did* happen.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from deltalake import DeltaTable

from tidelake.broker import EmbeddedBroker, free_port
from tidelake.contracts import QUARANTINE_PATH, TOPICS
from tidelake.ingest.positions import app_id
from tidelake.kafka_admin import ensure_topics
from tidelake.lake import Lake
from tidelake.s3server import EmbeddedS3
from tidelake.settings import KafkaSettings, LakeSettings
from tidelake.testing import FaultProxy

pytestmark = pytest.mark.integration

CLICKS = TOPICS["shop.clicks"]
INGEST_CMD = [
    sys.executable,
    "-m",
    "tidelake.cli",
    "ingest",
    "--once",
    "--json",
    "--topics",
    "shop.clicks",
]
# Request targets are /<bucket>/lake/<table>/...; a commit is the PUT of the next log entry.
BRONZE = f"/lake/{re.escape(CLICKS.bronze_path)}/"
BRONZE_COMMIT_PUT = BRONZE + r"_delta_log/\d{20}\.json$"
QUARANTINE_COMMIT_PUT = f"/lake/{re.escape(QUARANTINE_PATH)}/" + r"_delta_log/\d{20}\.json$"
# A record batch Tansu reads back from its S3 storage to serve a fetch.
TANSU_BATCH = r"/clusters/[^/]+/topics/.+/records/\d+\.batch$"
RECORDS = 2000
MAX_ROUNDS = 8


# -- helpers -----------------------------------------------------------------------------------


def click(i: int, pad: int = 0) -> bytes:
    """A valid click; ``pad`` bytes of a field the contract ignores make it bigger."""
    return orjson.dumps(
        {
            "note": "x" * pad,
            "event_id": str(uuid.uuid4()),
            "event_type": "click",
            "event_time": datetime.now(UTC).isoformat(),
            "user_id": f"u{i % 50}",
            "session_id": "s1",
            "product_id": "p1",
            "element": "buy-button",
        }
    )


def produce_clicks(
    kafka: KafkaSettings, n: int, bad_every: int = 13, pad: int = 0
) -> dict[int, int]:
    """Produce ``n`` clicks (every ``bad_every``-th one torn JSON); partition → next offset."""
    producer = Producer(
        kafka.client_config() | {"enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    ends: dict[int, int] = {}
    errors: list[str] = []

    def delivered(err: Any, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
            return
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None
        ends[partition] = max(ends.get(partition, 0), offset + 1)

    topic = CLICKS.physical_topic(kafka.topic_prefix)
    for i in range(n):
        value = b'{"torn' if bad_every and i % bad_every == 0 else click(i, pad)
        producer.produce(topic, value, key=f"u{i % 50}".encode(), on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors, errors
    assert sum(ends.values()) == n, f"offsets are not contiguous from 0: {ends}"
    return ends


def subprocess_env(kafka: KafkaSettings, lake: LakeSettings, **extra: str) -> dict[str, str]:
    """The environment of one ``tidelake ingest`` run: nothing ambient, only explicit settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KAFKA_", "TIDELAKE"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers or "",
        TIDELAKE_TOPIC_PREFIX=kafka.topic_prefix,
        TIDELAKE_CONSUMER_GROUP=kafka.consumer_group,
        LAKE_URI=lake.uri,
        AWS_ENDPOINT_URL=lake.aws_endpoint_url or "",
        AWS_ACCESS_KEY_ID=lake.aws_access_key_id or "",
        AWS_SECRET_ACCESS_KEY=lake.aws_secret_access_key or "",
        AWS_REGION=lake.aws_region or "us-east-1",
        AWS_ALLOW_HTTP="true",
        TIDELAKE_COMMIT_ROWS="100",
        TIDELAKE_QUIET_SECONDS="0.5",
        TIDELAKE_MAX_BATCH_SECONDS="30",
        TIDELAKE_ENV="test",
    )
    env.update(extra)
    return env


@dataclass
class Run:
    """One ``tidelake ingest --once --json`` process: exit code, its JSON reports, its stderr."""

    code: int
    reports: list[dict[str, Any]]
    stderr: str

    @property
    def saw_trouble(self) -> bool:
        """It failed, or it retried a write or a conflicting commit."""
        return self.code != 0 or any(
            r.get("write_retries", 0) or r.get("commit_conflicts", 0) for r in self.reports
        )


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> Run:
    out, err = proc.communicate(timeout=timeout)
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return Run(proc.returncode, reports, err)


def start_ingest(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        INGEST_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def positions(lake: Lake, kafka: KafkaSettings, parts: list[int]) -> dict[int, int | None]:
    """Bronze's stored position (txn version) per partition; None: never committed."""
    table = lake.open(CLICKS.bronze_path)
    topic = CLICKS.physical_topic(kafka.topic_prefix)
    return {
        p: table.transaction_version(app_id(kafka.consumer_group, topic, p)) if table else None
        for p in parts
    }


def ingest_until_caught_up(
    env: dict[str, str], lake: Lake, kafka: KafkaSettings, ends: dict[int, int]
) -> list[Run]:
    """Run ``tidelake ingest --once`` until bronze's positions are the partitions' ends."""
    runs: list[Run] = []
    for _ in range(MAX_ROUNDS):
        runs.append(finish(start_ingest(env)))
        if positions(lake, kafka, list(ends)) == ends:
            return runs
    pytest.fail(
        f"not caught up after {MAX_ROUNDS} runs: positions {positions(lake, kafka, list(ends))}"
        f", ends {ends}; exit codes {[r.code for r in runs]}; last stderr:\n{runs[-1].stderr}"
    )


def read(lake: Lake, relative: str, columns: list[str]) -> pa.Table:
    return DeltaTable(lake.uri(relative), storage_options=lake.storage_options).to_pyarrow_table(
        columns=columns
    )


def assert_exactly_once(lake: Lake, kafka: KafkaSettings, ends: dict[int, int]) -> None:
    """Bronze and quarantine together hold every produced offset exactly once, nothing else."""
    topic = CLICKS.physical_topic(kafka.topic_prefix)
    bronze = read(lake, CLICKS.bronze_path, ["_partition", "_offset"])
    quarantine = read(lake, QUARANTINE_PATH, ["_topic", "_partition", "_offset"])
    quarantine = quarantine.filter(pc.equal(quarantine["_topic"], topic))
    seen = list(zip(bronze["_partition"].to_pylist(), bronze["_offset"].to_pylist(), strict=True))
    seen += zip(
        quarantine["_partition"].to_pylist(), quarantine["_offset"].to_pylist(), strict=True
    )
    twice = len(seen) - len(set(seen))
    expected = {(p, o) for p, end in ends.items() for o in range(end)}
    lost = sorted(expected - set(seen))
    assert not twice, f"{twice} records were written twice"
    assert not lost, f"{len(lost)} records lost, e.g. {lost[:5]}"
    assert set(seen) == expected, f"unexpected coordinates {sorted(set(seen) - expected)[:5]}"


def assert_some_run_saw_trouble(runs: list[Run]) -> None:
    assert any(r.saw_trouble for r in runs), (
        "every run succeeded without a retry: the faults never reached the engine "
        f"(exit codes {[r.code for r in runs]})"
    )


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def proxy(s3_server: EmbeddedS3) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.endpoint_url) as p:
        yield p


@pytest.fixture
def proxied_lake(s3_lake_settings: LakeSettings, proxy: FaultProxy) -> LakeSettings:
    """The test's S3 lake, reached through the fault proxy."""
    return replace(s3_lake_settings, aws_endpoint_url=proxy.url)


@pytest.fixture
def lake(s3_lake_settings: LakeSettings) -> Lake:
    """The same lake reached directly, for reading what really is there."""
    return Lake.from_settings(s3_lake_settings)


# -- S3 faults ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_bronze_commit_put_that_fails_once_mid_batch_loses_nothing(
    kafka_settings: KafkaSettings, proxied_lake: LakeSettings, lake: Lake, proxy: FaultProxy
) -> None:
    # Regression: one reset commit PUT failed the batch, but the piece queued behind it still
    # committed, and its txn moved bronze's position past ~100 records never written.
    ends = produce_clicks(kafka_settings, RECORDS)
    # The 5th bronze log PUT (version 0 is the table's creation) is cut before moto sees it; the
    # object store client does not retry a conditional create, so the engine gets the error.
    rule = proxy.fail(1, kind="reset", method="PUT", path=BRONZE_COMMIT_PUT, after=4)

    runs = ingest_until_caught_up(
        subprocess_env(kafka_settings, proxied_lake), lake, kafka_settings, ends
    )

    assert rule.injected == 1, "the fault was never injected"
    assert_some_run_saw_trouble(runs)
    assert_exactly_once(lake, kafka_settings, ends)


@pytest.mark.slow
def test_connection_resets_lost_responses_and_latency_spikes_neither_lose_nor_duplicate(
    kafka_settings: KafkaSettings, proxied_lake: LakeSettings, lake: Lake, proxy: FaultProxy
) -> None:
    ends = produce_clicks(kafka_settings, RECORDS)
    # Every 7th PUT (data files and commits alike) is reset, up to 8 times; the 3rd quarantine
    # commit reaches moto but its answer is lost, so that commit happened without the writer
    # knowing; every 4th request is held 150 ms.
    lost = proxy.fail(1, kind="lost_response", method="PUT", path=QUARANTINE_COMMIT_PUT, after=2)
    resets = proxy.fail(8, kind="reset", method="PUT", after=3, every=7)
    slow = proxy.latency(150, every=4)

    runs = ingest_until_caught_up(
        subprocess_env(kafka_settings, proxied_lake), lake, kafka_settings, ends
    )

    assert lost.injected == 1 and resets.injected >= 4 and slow.injected > 0
    stats = proxy.stats()
    assert stats.faults["reset"] == resets.injected and stats.faults["lost_response"] == 1
    assert_some_run_saw_trouble(runs)
    assert_exactly_once(lake, kafka_settings, ends)


@pytest.mark.slow
def test_an_s3_outage_during_a_bronze_commit_loses_nothing(
    kafka_settings: KafkaSettings, proxied_lake: LakeSettings, lake: Lake, proxy: FaultProxy
) -> None:
    ends = produce_clicks(kafka_settings, RECORDS)
    # Every request to the bronze table gets 503 SlowDown for 6 s, from a request in the middle
    # of the batch's commits on: longer than the object store client's own retries (~3 s).
    outage = proxy.outage(6.0, path=BRONZE, after=25)

    runs = ingest_until_caught_up(
        subprocess_env(kafka_settings, proxied_lake), lake, kafka_settings, ends
    )

    # The outage must really have been met, several times over (the client's own retries and the
    # engine's backoff between attempts decide how many requests fall into the 6 s: 8-20 seen).
    assert outage.injected >= 5, f"only {outage.injected} requests hit the outage"
    assert proxy.stats().statuses.get(503) == outage.injected
    assert_some_run_saw_trouble(runs)
    assert_exactly_once(lake, kafka_settings, ends)


# -- broker restart ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_broker_killed_mid_batch_and_restarted_on_the_same_port_loses_nothing(
    s3_server: EmbeddedS3,
    proxied_lake: LakeSettings,
    lake: Lake,
    proxy: FaultProxy,
    tmp_path: Path,
    topic_prefix: str,
) -> None:
    # Tansu keeps its log in S3 under clusters/<cluster id>/: the same id, port and storage bring
    # the same cluster back, with its offsets. Its storage is reached through the proxy too, so
    # the test sees the restarted broker read record batches back for the running batch.
    storage = f"tansu-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(storage)
    s3_env = {k: v for k, v in s3_server.env(storage).items() if k.startswith("AWS_")}
    port = free_port()

    def tansu(cluster_id: str | None = None) -> EmbeddedBroker:
        return EmbeddedBroker(
            port=port,
            cluster_id=cluster_id,
            storage_engine=f"s3://{storage}/",
            env=s3_env | {"AWS_ENDPOINT_URL": proxy.url},
            log_dir=tmp_path / "tansu",
            stop_grace=2.0,
        )

    broker = tansu()
    # A new broker process with the old one's id, port and storage, as an operator would start.
    restarted = tansu(broker.cluster_id)
    with broker:
        kafka = KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=topic_prefix,
            consumer_group=f"{topic_prefix}ingest",
            partitions=3,
        )
        ensure_topics(kafka, [CLICKS])
        # 3 MB of ~1 KB records and a 16 MiB batch budget, which lets librdkafka prefetch only
        # 1 MiB: the batch still fetches from the broker when it dies. (Below 16 MiB the
        # derived fetch.max.bytes is under librdkafka's message.max.bytes and it refuses.)
        ends = produce_clicks(kafka, 3000, pad=900)
        before = watermarks(kafka, list(ends))
        env = subprocess_env(kafka, proxied_lake, TIDELAKE_MAX_BATCH_BYTES=str(16 * 1024 * 1024))
        first = start_ingest(env)
        # The broker dies once the first data commit landed (bronze version 0 is the creation).
        if not proxy.wait_for(2, "PUT", BRONZE_COMMIT_PUT, timeout=120):
            first.kill()
            pytest.fail(f"no bronze commits; the run said:\n{finish(first).stderr[-3000:]}")
        assert first.poll() is None, "the run finished before the broker could be killed"
        broker.kill()
        at_kill = positions(lake, kafka, list(ends))
        time.sleep(1.0)
        with restarted:
            after = watermarks(kafka, list(ends))
            since = time.time()
            runs = [finish(first)]
            # Record batches the restarted broker read back from storage for the running batch.
            reread = proxy.count(
                "GET", TANSU_BATCH, lambda r: since < r.at and r.target.startswith(f"/{storage}/")
            )
            runs += ingest_until_caught_up(env, lake, kafka, ends)

    assert at_kill != ends, f"the batch was already done when the broker died: {at_kill}"
    assert after == before, "the restarted broker did not keep its log"
    assert reread > 0, "the running batch fetched nothing from the restarted broker"
    assert_exactly_once(lake, kafka, ends)
    assert all(r.code == 0 for r in runs[1:]), [r.stderr[-2000:] for r in runs if r.code]


def watermarks(kafka: KafkaSettings, parts: list[int]) -> dict[int, tuple[int, int]]:
    """(low, high) watermark per partition, as the broker reports them."""
    consumer = Consumer(kafka.client_config() | {"group.id": f"{kafka.consumer_group}-marks"})
    try:
        topic = CLICKS.physical_topic(kafka.topic_prefix)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in parts
        }
    finally:
        consumer.close()
