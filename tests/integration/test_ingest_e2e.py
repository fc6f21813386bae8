"""End-to-end exactly-once ingestion against the real embedded broker, local disk and an S3 API.

These tests run the engine as users do: the simulator produces, ``tidelake ingest`` (in-process or
as a separate process that gets SIGKILLed) drains, and the reconciliation report must pass.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from confluent_kafka import Producer
from deltalake import DeltaTable

from tidelake.contracts import QUARANTINE_PATH, TOPICS
from tidelake.ingest import IngestEngine
from tidelake.ingest.faults import FAULT_POINTS
from tidelake.lake import Lake
from tidelake.quality.reconcile import reconcile
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings, Settings
from tidelake.simulator import SimulatorConfig, run_simulation

pytestmark = pytest.mark.integration

CLICKS = TOPICS["shop.clicks"]


def click(event_time: datetime | None = None) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "click",
            "event_time": (event_time or datetime.now(UTC)).isoformat(),
            "user_id": "u1",
            "session_id": "s1",
            "product_id": "p1",
            "element": "buy-button",
        }
    )


@pytest.fixture(params=["local", "s3"])
def lake_settings(request: pytest.FixtureRequest) -> LakeSettings:
    name = "local_lake_settings" if request.param == "local" else "s3_lake_settings"
    settings: LakeSettings = request.getfixturevalue(name)
    return settings


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[Producer]:
    p = Producer(
        kafka_settings.client_config() | {"enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    yield p
    p.flush(10)


def produce_clicks(
    producer: Producer, kafka: KafkaSettings, n: int, bad_every: int = 0, batches: int = 1
) -> None:
    topic = CLICKS.physical_topic(kafka.topic_prefix)
    for b in range(batches):
        for i in range(n // batches):
            value = b'{"torn' if bad_every and i % bad_every == 0 else click()
            producer.produce(topic, value, key=f"u{(b * n + i) % 50}".encode())
        assert producer.flush(10) == 0


def read(lake: Lake, relative: str, columns: list[str] | None = None) -> pa.Table:
    return DeltaTable(lake.uri(relative), storage_options=lake.storage_options).to_pyarrow_table(
        columns=columns
    )


def assert_exactly_once(lake: Lake, kafka: KafkaSettings, expected_total: int) -> None:
    """Bronze and quarantine together hold every offset of the topic exactly once."""
    topic = CLICKS.physical_topic(kafka.topic_prefix)
    bronze = read(lake, CLICKS.bronze_path, ["_partition", "_offset"])
    quarantine = read(lake, QUARANTINE_PATH, ["_topic", "_partition", "_offset"])
    quarantine = quarantine.filter(pa.compute.equal(quarantine["_topic"], topic))
    seen = list(zip(bronze["_partition"].to_pylist(), bronze["_offset"].to_pylist(), strict=True))
    seen += zip(
        quarantine["_partition"].to_pylist(), quarantine["_offset"].to_pylist(), strict=True
    )
    assert len(seen) == len(set(seen)), "a record was written twice"
    assert len(seen) == expected_total, f"{expected_total - len(seen)} records lost"
    by_partition: dict[int, list[int]] = {}
    for p, o in seen:
        by_partition.setdefault(p, []).append(o)
    for p, offsets in by_partition.items():
        assert sorted(offsets) == list(range(len(offsets))), f"gap in partition {p}"


def test_simulated_traffic_with_late_duplicate_and_malformed_events_reconciles(
    kafka_settings: KafkaSettings, lake_settings: LakeSettings
) -> None:
    settings = Settings(kafka=kafka_settings, lake=lake_settings)
    config = SimulatorConfig(
        count=2500,
        duration=None,
        max_rate=True,
        seed=11,
        late_fraction=0.10,
        very_late_fraction=0.03,
        duplicate_fraction=0.04,
        malformed_fraction=0.04,
        wait_late=False,
    )
    summary = run_simulation(settings, config, progress=False)
    assert summary.ok and summary.delivered == 2500
    engine = IngestEngine.from_settings(
        Settings(kafka=kafka_settings, lake=lake_settings, ingest=IngestSettings(quiet_seconds=0.5))
    )
    reports = engine.ingest_all()
    assert sum(r.records for r in reports) == 2500
    assert sum(r.duplicate_event_ids for r in reports) >= summary.by_kind.get("duplicate", 0)

    lake = Lake.from_settings(lake_settings)
    report = reconcile(lake, topic_prefix=kafka_settings.topic_prefix, run_id=summary.run_id)
    assert report.ok, report.render()
    quarantine = read(lake, QUARANTINE_PATH, ["error", "error_detail"])
    assert quarantine.num_rows == summary.by_kind["malformed"]
    assert all(detail for detail in quarantine["error_detail"].to_pylist())
    for contract in TOPICS.values():
        bronze = read(lake, contract.bronze_path, ["_partition", "_offset"])
        coords = list(
            zip(bronze["_partition"].to_pylist(), bronze["_offset"].to_pylist(), strict=True)
        )
        assert len(coords) == len(set(coords)), f"{contract.name}: duplicate coordinates"


def test_the_last_record_batch_lands_even_when_the_broker_under_reports_the_watermark(
    kafka_settings: KafkaSettings, local_lake_settings: LakeSettings, producer: Producer
) -> None:
    produce_clicks(producer, kafka_settings, 90, batches=3)
    engine = IngestEngine(
        Lake.from_settings(local_lake_settings), kafka_settings, IngestSettings(quiet_seconds=0.5)
    )
    before = engine.lag(CLICKS)
    assert before.pending
    report = engine.ingest_topic(CLICKS)
    assert report.records == 90
    lake = Lake.from_settings(local_lake_settings)
    assert_exactly_once(lake, kafka_settings, 90)
    after = engine.lag(CLICKS)
    assert not after.pending, after


def test_a_late_event_lands_in_the_hour_partition_of_its_event_time_on_s3(
    kafka_settings: KafkaSettings, s3_lake_settings: LakeSettings, producer: Producer
) -> None:
    hours_ago = datetime.now(UTC).replace(minute=10, second=0, microsecond=0) - timedelta(hours=5)
    topic = CLICKS.physical_topic(kafka_settings.topic_prefix)
    producer.produce(topic, click(hours_ago), key=b"u1")
    producer.produce(topic, click(), key=b"u1")
    producer.flush(10)
    lake = Lake.from_settings(s3_lake_settings)
    report = IngestEngine(lake, kafka_settings, IngestSettings(quiet_seconds=0.5)).ingest_topic(
        CLICKS
    )
    assert f"{hours_ago:%Y-%m-%d-%H}:00" in report.partitions_touched
    assert report.late_count == 1
    table = DeltaTable(lake.uri(CLICKS.bronze_path), storage_options=lake.storage_options)
    files = [
        a
        for a in pa.table(table.get_add_actions(flatten=True)).to_pylist()
        if a["partition.event_hour"] == hours_ago.hour
        and str(a["partition.event_date"]) == hours_ago.date().isoformat()
    ]
    assert files, "no file in the late event's hour partition"
    rows = table.to_pyarrow_table(
        filters=[("event_date", "=", hours_ago.date()), ("event_hour", "=", hours_ago.hour)]
    )
    assert rows.column("event_time").to_pylist() == [hours_ago]


def ingest_env(kafka: KafkaSettings, lake: LakeSettings, **extra: str) -> dict[str, str]:
    # DAGSTER_HOME too: `make test` exports the developer's own instance, which no test may touch.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "KAFKA_", "TIDELAKE"))
        and k not in ("DAGSTER_HOME", "LAKE_URI")
    }
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers or "",
        TIDELAKE_TOPIC_PREFIX=kafka.topic_prefix,
        TIDELAKE_CONSUMER_GROUP=kafka.consumer_group,
        LAKE_URI=lake.uri,
        TIDELAKE_COMMIT_ROWS="60",
        TIDELAKE_QUIET_SECONDS="0.5",
        TIDELAKE_ENV="test",
    )
    if lake.is_s3:
        env.update(
            AWS_ENDPOINT_URL=lake.aws_endpoint_url or "",
            AWS_ACCESS_KEY_ID=lake.aws_access_key_id or "",
            AWS_SECRET_ACCESS_KEY=lake.aws_secret_access_key or "",
            AWS_REGION=lake.aws_region or "us-east-1",
            AWS_ALLOW_HTTP="true",
        )
    env.update(extra)
    return env


INGEST_CMD = [sys.executable, "-m", "tidelake.cli", "ingest", "--once", "--topics", "shop.clicks"]


@pytest.mark.slow
def test_kill_9_at_any_point_of_ingestion_neither_loses_nor_duplicates(
    kafka_settings: KafkaSettings, local_lake_settings: LakeSettings, producer: Producer
) -> None:
    rng = random.Random(20261121)
    lake = Lake.from_settings(local_lake_settings)
    log_dir = Path(lake.uri(CLICKS.bronze_path)) / "_delta_log"
    total = 0
    trials = [(point, rng.randint(1, 3)) for point in FAULT_POINTS for _ in range(4)]
    trials += [("timer", 0)] * 8
    rng.shuffle(trials)
    killed: list[str] = []
    for point, nth in trials:
        if point == "timer":
            # Enough small commits that the engine is still mid-stream when the signal lands.
            produce_clicks(producer, kafka_settings, 2400, bad_every=9, batches=2)
            total += 2400
            commits_before = len(list(log_dir.glob("*.json"))) if log_dir.exists() else 0
            env = ingest_env(kafka_settings, local_lake_settings, TIDELAKE_COMMIT_ROWS="20")
            proc = subprocess.Popen(INGEST_CMD, env=env)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if log_dir.exists() and len(list(log_dir.glob("*.json"))) > commits_before:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.8))
            proc.send_signal(signal.SIGKILL)
            code = proc.wait(30)
        else:
            produce_clicks(producer, kafka_settings, 240, bad_every=9, batches=2)
            total += 240
            env = ingest_env(
                kafka_settings, local_lake_settings, TIDELAKE_FAULT_POINT=f"{point}:{nth}"
            )
            code = subprocess.run(INGEST_CMD, env=env, timeout=120, check=False).returncode
            assert code == -signal.SIGKILL, f"fault point {point}:{nth} was never reached"
        if code == -signal.SIGKILL:
            killed.append(point)
        # Restart: the recovery run must finish the job without duplicating anything.
        recovery = subprocess.run(
            INGEST_CMD,
            env=ingest_env(kafka_settings, local_lake_settings),
            timeout=120,
            check=False,
        )
        assert recovery.returncode == 0
        assert_exactly_once(lake, kafka_settings, total)
    assert len(killed) >= 24, f"only {len(killed)} of {len(trials)} trials were killed: {killed}"


# Runs ``tidelake <argv>`` once the barrier file exists. The heavy imports happen before the
# wait, so two racers leave the barrier within milliseconds of each other, not a start-up apart.
RACER = """
import os, sys, time
from pathlib import Path
import tidelake.cli, tidelake.cli.ingest, tidelake.ingest.engine
barrier = Path(sys.argv[1])
Path(f"{barrier}.ready.{os.getpid()}").touch()
while not barrier.exists():
    time.sleep(0.002)
sys.exit(tidelake.cli.main(sys.argv[2:]))
"""


def start_racers(barrier: Path, env: dict[str, str], n: int) -> list[subprocess.Popen[str]]:
    """Start ``n`` ``tidelake ingest --once --json`` processes and release them together."""
    argv = ["ingest", "--once", "--json", "--topics", "shop.clicks"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(barrier), *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    deadline = time.monotonic() + 60
    while len(list(barrier.parent.glob(f"{barrier.name}.ready.*"))) < n:
        assert all(p.poll() is None for p in procs), "a racer died before the barrier"
        assert time.monotonic() < deadline, "the racers never got ready"
        time.sleep(0.01)
    barrier.touch()
    return procs


def ranges_overlap(a: list[int], b: list[int]) -> bool:
    """Whether half-open offset ranges ``[first, next)`` share an offset."""
    return max(a[0], b[0]) < min(a[1], b[1])


@pytest.mark.slow
def test_two_ingestion_processes_racing_on_one_topic_write_nothing_twice(
    kafka_settings: KafkaSettings,
    s3_lake_settings: LakeSettings,
    producer: Producer,
    tmp_path: Path,
) -> None:
    # A backlog of many small commits, two processes released by one barrier: both start from
    # the same (empty) positions, so they read the same offsets and commit the same app_ids.
    produce_clicks(producer, kafka_settings, 3000, bad_every=13, batches=3)
    env = ingest_env(kafka_settings, s3_lake_settings, TIDELAKE_COMMIT_ROWS="100")
    procs = start_racers(tmp_path / "go", env, 2)
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in outs]
    a, b = (
        next(orjson.loads(line) for line in out.splitlines() if line.startswith("{"))
        for out, _ in outs
    )

    # They really raced: consuming at the same time, over the same offsets, and at least one of
    # them lost a commit to the other (a conflict) or dropped records the other had committed.
    for r in (a, b):
        assert r.get("started_at") and r.get("finished_at"), f"a report without times: {r}"
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"], (
        f"no overlap in time: {a['started_at']}-{a['finished_at']}, "
        f"{b['started_at']}-{b['finished_at']}"
    )
    shared = [
        p
        for p in a["offsets"]
        if p in b["offsets"] and ranges_overlap(a["offsets"][p], b["offsets"][p])
    ]
    assert shared, f"no partition read by both: {a['offsets']} vs {b['offsets']}"
    contention = sum(r.get("commit_conflicts", 0) + r["skipped_already_committed"] for r in (a, b))
    assert contention > 0, "neither process met the other's commits"
    assert_exactly_once(Lake.from_settings(s3_lake_settings), kafka_settings, 3000)


def test_the_cli_drains_every_topic_and_exits_zero(
    kafka_settings: KafkaSettings, local_lake_settings: LakeSettings, producer: Producer
) -> None:
    produce_clicks(producer, kafka_settings, 30)
    cmd = [sys.executable, "-m", "tidelake.cli", "ingest", "--once"]
    out = subprocess.run(
        cmd,
        env=ingest_env(kafka_settings, local_lake_settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "shop.clicks: 30 records" in out.stdout
    assert out.stdout.count("records") == len(TOPICS)


def test_the_cli_explains_a_missing_broker_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TIDELAKE"))}
    out = subprocess.run(
        [sys.executable, "-m", "tidelake.cli", "ingest", "--once"],
        env=env | {"LAKE_URI": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "KAFKA_BOOTSTRAP_SERVERS" in out.stderr
