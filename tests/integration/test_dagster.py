"""Dagster against the real embedded broker and a local lake: a job run, and the daemon.

The job test executes ``ingest_bronze`` in a real instance (temporary ``DAGSTER_HOME``) and checks
that bronze holds the valid records, quarantine the broken ones, and every asset check passes.
The daemon test starts ``dagster-daemon run`` on the project's workspace and waits for a
sensor-launched run to materialize bronze.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import polars as pl
import pytest
from confluent_kafka import Producer

from assets.bronze import bronze_key, build_bronze_layer
from pipeline_defs.definitions import build_definitions
from resources import FakeKafkaResource, IngestResource, LakeResource
from tidelake.contracts import TOPICS, TopicContract
from tidelake.dagster_home import INGEST_TOPIC_TAG
from tidelake.fake_kafka import FakeKafka
from tidelake.settings import KafkaSettings, LakeSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DAEMON_DEADLINE_SECONDS = 90.0


def event(contract: TopicContract, i: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    values: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": sorted(contract.event_types)[0],
        "event_time": now,
    }
    for f in contract.fields:
        values[f.name] = {"string": f"{f.name}-{i}", "int": 1 + i, "float": 2.5, "timestamp": now}[
            f.kind
        ]
    return values


def malformed(contract: TopicContract) -> list[bytes]:
    """One message per kind of breakage: not UTF-8, not JSON, not an object, unknown type."""
    unknown = event(contract, 0) | {"event_type": "refund"}
    return [b"\xff\xfe\xfd", b'{"event_id": ', b"[1, 2, 3]", orjson.dumps(unknown)]


def produce(kafka: KafkaSettings, contract: TopicContract, valid: int) -> int:
    """Produce ``valid`` good messages plus the malformed ones; return how many were malformed."""
    producer = Producer(kafka.client_config() | {"linger.ms": 5})
    topic = contract.physical_topic(kafka.topic_prefix)
    for i in range(valid):
        producer.produce(topic, orjson.dumps(event(contract, i)), key=f"user-{i % 17}".encode())
    broken = malformed(contract)
    for value in broken:
        producer.produce(topic, value, key=b"user-bad")
    assert producer.flush(30) == 0
    return len(broken)


def lake_env(kafka: KafkaSettings, lake_uri: str, environment: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers or "",
        "TIDELAKE_TOPIC_PREFIX": kafka.topic_prefix,
        "TIDELAKE_CONSUMER_GROUP": kafka.consumer_group,
        "LAKE_URI": lake_uri,
        "TIDELAKE_ENV": environment,
        "TIDELAKE_QUIET_SECONDS": "0.3",
    }


def bronze_rows(lake_uri: str, contract: TopicContract) -> int:
    return pl.read_delta(f"{lake_uri}/{contract.bronze_path}").height


def quarantine_rows(lake_uri: str, physical_topic: str) -> int:
    q = pl.read_delta(f"{lake_uri}/quarantine")
    return q.filter(pl.col("_topic") == physical_topic).height


def test_the_ingest_job_lands_valid_rows_in_bronze_and_passes_every_check(
    clean_env: Path,
    dagster_home: Path,
    kafka_settings: KafkaSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake_uri = str(tmp_path / "lake")
    env = lake_env(kafka_settings, lake_uri, "test")
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # EnvVar references resolve from the process at run time
    purchases, clicks = TOPICS["shop.purchases"], TOPICS["shop.clicks"]
    bad = produce(kafka_settings, purchases, 300)
    produce(kafka_settings, clicks, 120)
    prefix = kafka_settings.topic_prefix

    defs = build_definitions(env)
    instance = dg.DagsterInstance.get()
    result = defs.resolve_job_def("ingest_bronze").execute_in_process(
        instance=instance, raise_on_error=False
    )

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 3 * len(TOPICS)
    failed = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed}
    assert not failed
    assert bronze_rows(lake_uri, purchases) == 300
    assert bronze_rows(lake_uri, clicks) == 120
    assert quarantine_rows(lake_uri, purchases.physical_topic(prefix)) == bad
    assert quarantine_rows(lake_uri, clicks.physical_topic(prefix)) == bad
    record = instance.get_latest_materialization_event(bronze_key(purchases))
    assert record is not None and record.asset_materialization is not None
    assert record.asset_materialization.metadata["rows"].value == 300


def test_bronze_and_its_checks_work_on_an_s3_lake(
    clean_env: Path, s3_lake_settings: LakeSettings
) -> None:
    s3 = s3_lake_settings
    lake = LakeResource(
        uri=s3.uri,
        aws_region=s3.aws_region,
        aws_endpoint_url=s3.aws_endpoint_url,
        aws_access_key_id=s3.aws_access_key_id,
        aws_secret_access_key=s3.aws_secret_access_key,
        aws_allow_http=s3.aws_allow_http,
    )
    contract = TOPICS["infra.sensor_readings"]
    fake = FakeKafka()
    fake.create_topic(contract.name, 3)
    for i in range(40):
        fake.produce(contract.name, orjson.dumps(event(contract, i)), key=f"d{i}".encode())
    fake.produce(contract.name, b"nope", key=b"d0")
    specs, assets = build_bronze_layer([contract])

    result = dg.materialize(
        [*specs, *assets],
        selection=[bronze_key(contract)],
        resources={
            "kafka": FakeKafkaResource(fake),
            "lake": lake,
            "ingest": IngestResource(quiet_seconds=0.05),
        },
    )

    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    table = lake.lake().open(contract.bronze_path)
    assert table is not None
    assert table.to_pyarrow_table(columns=["_offset"]).num_rows == 40


@pytest.fixture
def daemon_env(
    clean_env: Path, dagster_home: Path, kafka_settings: KafkaSettings, tmp_path: Path
) -> dict[str, str]:
    env = dict(os.environ) | lake_env(kafka_settings, str(tmp_path / "lake"), "local")
    env["DAGSTER_HOME"] = str(dagster_home)
    # These tests are about sensor-launched runs; the default model ingests in a worker instead.
    env["TIDELAKE_INGEST_MODEL"] = "runs"
    return env


@pytest.fixture
def daemon(daemon_env: Mapping[str, str], tmp_path: Path) -> Iterator[Path]:
    """``dagster-daemon run`` on the project workspace; yields its log file; killed afterwards."""
    log = tmp_path / "daemon.log"
    binary = Path(sys.executable).with_name("dagster-daemon")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=dict(daemon_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: code server and run workers too
        )
        try:
            yield log
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def test_a_sensor_launched_run_materializes_bronze(
    daemon_env: Mapping[str, str], kafka_settings: KafkaSettings, daemon: Path
) -> None:
    clicks = TOPICS["shop.clicks"]
    produce(kafka_settings, clicks, 50)
    instance = dg.DagsterInstance.get()
    deadline = time.monotonic() + DAEMON_DEADLINE_SECONDS
    runs: list[dg.DagsterRun] = []
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={INGEST_TOPIC_TAG: clicks.name}))
        if any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs):
            break
        if any(r.status == dg.DagsterRunStatus.FAILURE for r in runs):
            break
        time.sleep(1.0)
    log_tail = daemon.read_text(errors="replace")[-4000:]
    succeeded = [r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS]
    assert succeeded, f"no successful run within {DAEMON_DEADLINE_SECONDS}s: {runs}\n{log_tail}"
    run = succeeded[0]
    assert run.job_name == "ingest_shop_clicks"
    assert run.tags["dagster/run_key"].startswith("shop.clicks:")
    assert run.tags.get("dagster/sensor_name") == "kafka_shop_clicks_sensor"
    assert bronze_rows(daemon_env["LAKE_URI"], clicks) >= 50
