"""The ingestion worker (``tidelake ingest --follow``) as users run it: a long-lived process
against the real broker, killed mid-batch and restarted, and seen through Dagster's GraphQL API.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from deltalake import DeltaTable
from test_ingest_e2e import assert_exactly_once, ingest_env, produce_clicks

from tidelake.contracts import TOPICS
from tidelake.dagster_home import ensure_dagster_home
from tidelake.ingest import app_id
from tidelake.ingest.faults import INGEST_KILL_POINTS
from tidelake.ingest.positions import hour_partition_key
from tidelake.lake import Lake
from tidelake.settings import KafkaSettings, LakeSettings

pytestmark = pytest.mark.integration

CLICKS = TOPICS["shop.clicks"]
WORKER = [sys.executable, "-m", "tidelake.cli", "ingest", "--follow", "--topics", "shop.clicks"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[Producer]:
    p = Producer(kafka_settings.client_config() | {"enable.idempotence": True, "linger.ms": 5})
    yield p
    p.flush(10)


def ends(kafka: KafkaSettings) -> dict[int, int]:
    """Each partition's true end (the broker's watermark can under-report: read to the end)."""
    from confluent_kafka import Consumer, TopicPartition

    topic = CLICKS.physical_topic(kafka.topic_prefix)
    c = Consumer(kafka.client_config() | {"group.id": "ends", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(kafka.partitions)])
    last: dict[int, int] = {}
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 1.5:
        msgs = c.consume(1000, 0.2)
        for m in msgs:
            if m.error() is None:
                last[m.partition()] = m.offset() + 1
        if msgs:
            quiet_since = time.monotonic()
    c.close()
    return last


def positions(lake: Lake, kafka: KafkaSettings) -> dict[int, int | None]:
    table = lake.open(CLICKS.bronze_path)
    topic = CLICKS.physical_topic(kafka.topic_prefix)
    return {
        p: (table.transaction_version(app_id(kafka.consumer_group, topic, p)) if table else None)
        for p in range(kafka.partitions)
    }


def wait_caught_up(
    lake: Lake, kafka: KafkaSettings, target: dict[int, int], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pos = positions(lake, kafka)
        if all((pos.get(p) or 0) >= end for p, end in target.items()):
            return
        time.sleep(0.3)
    raise AssertionError(f"the worker did not catch up: {positions(lake, kafka)} < {target}")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(60)


@pytest.mark.slow
def test_the_worker_killed_mid_batch_and_restarted_loses_and_duplicates_nothing(
    kafka_settings: KafkaSettings, local_lake_settings: LakeSettings, producer: Producer
) -> None:
    lake = Lake.from_settings(local_lake_settings)
    total = 0
    # Each kill point once, at the 2nd pass (mid-stream: one commit has landed), then a worker
    # killed at a random moment while records keep arriving.
    for point in INGEST_KILL_POINTS:
        produce_clicks(producer, kafka_settings, 600, bad_every=9, batches=3)
        total += 600
        env = ingest_env(
            kafka_settings,
            local_lake_settings,
            TIDELAKE_COMMIT_ROWS="50",
            TIDELAKE_FAULT_POINT=f"{point}:2",
        )
        doomed = subprocess.Popen(WORKER, env=env)
        assert doomed.wait(120) == -signal.SIGKILL, f"the worker never reached {point}"
        worker = subprocess.Popen(WORKER, env=ingest_env(kafka_settings, local_lake_settings))
        try:
            wait_caught_up(lake, kafka_settings, ends(kafka_settings), 90)
        finally:
            assert stop(worker) == 0
        assert_exactly_once(lake, kafka_settings, total)

    worker = subprocess.Popen(
        WORKER, env=ingest_env(kafka_settings, local_lake_settings, TIDELAKE_COMMIT_ROWS="20")
    )
    produce_clicks(producer, kafka_settings, 1200, bad_every=9, batches=4)
    total += 1200
    time.sleep(1.0)
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)
    worker = subprocess.Popen(WORKER, env=ingest_env(kafka_settings, local_lake_settings))
    try:
        wait_caught_up(lake, kafka_settings, ends(kafka_settings), 90)
    finally:
        assert stop(worker) == 0
    assert_exactly_once(lake, kafka_settings, total)


def event_times(table: DeltaTable) -> list[Any]:
    """Every ``event_time`` of ``table`` (UTC datetimes)."""
    return list(table.to_pyarrow_table(columns=["event_time"]).column("event_time").to_pylist())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(port: int, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body: dict[str, Any] = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


BRONZE_QUERY = """
{
  assetNodeOrError(assetKey: {path: ["bronze", "shop_clicks"]}) {
    __typename
    ... on AssetNode {
      assetMaterializations(limit: 50) {
        runId
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
      assetChecksOrError {
        ... on AssetChecks {
          checks { name blocking executionForLatestMaterialization { status runId } }
        }
      }
    }
  }
}
"""


DERIVED_QUERY = """
{
  assetNodeOrError(assetKey: {path: %s}) {
    __typename
    ... on AssetNode {
      assetMaterializations(limit: 50) { runId partition }
      assetChecksOrError {
        ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
      }
    }
  }
}
"""


def derived_node(port: int, path: list[str]) -> dict[str, Any]:
    node: dict[str, Any] = graphql(port, DERIVED_QUERY % json.dumps(path))["assetNodeOrError"]
    return node


def test_worker_batches_are_materializations_and_check_results_in_the_dagster_graphql_api(
    kafka_settings: KafkaSettings,
    local_lake_settings: LakeSettings,
    producer: Producer,
    tmp_path: Path,
) -> None:
    home = ensure_dagster_home(tmp_path / "dagster_home")
    env = ingest_env(kafka_settings, local_lake_settings, DAGSTER_HOME=str(home))
    produce_clicks(producer, kafka_settings, 300, bad_every=10)
    worker = subprocess.Popen(WORKER, env=env)
    port = free_port()
    webserver = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-w",
            str(REPO / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env | {"TIDELAKE_ENV": "test"},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        lake = Lake.from_settings(local_lake_settings)
        wait_caught_up(lake, kafka_settings, ends(kafka_settings), 90)
        deadline = time.monotonic() + 120
        data: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                data = graphql(port, BRONZE_QUERY)["assetNodeOrError"]
                if data.get("assetMaterializations"):
                    break
            except OSError:
                pass
            time.sleep(1.0)
        materializations = data.get("assetMaterializations")
        assert materializations, f"no materialization of bronze/shop_clicks in the API: {data}"
        assert all(m["runId"] == "" for m in materializations), "runless: no run per batch"
        rows = {
            e["label"]: e.get("intValue")
            for m in materializations
            for e in m["metadataEntries"]
            if e["label"] in {"rows", "invalid"}
        }
        assert set(rows) == {"rows", "invalid"}
        valid = sum(
            e["intValue"]
            for m in materializations
            for e in m["metadataEntries"]
            if e["label"] == "rows"
        )
        invalid = sum(
            e["intValue"]
            for m in materializations
            for e in m["metadataEntries"]
            if e["label"] == "invalid"
        )
        assert (valid, invalid) == (270, 30)
        checks = {c["name"]: c for c in data["assetChecksOrError"]["checks"]}
        for name in ("unique_kafka_coordinates", "contiguous_offsets", "contract_schema"):
            assert checks[name]["blocking"]
            assert checks[name]["executionForLatestMaterialization"]["status"] == "SUCCEEDED"
        bronze = DeltaTable(lake.uri(CLICKS.bronze_path))
        assert bronze.to_pyarrow_table().num_rows == 270
        # The worker refreshed silver and gold itself: runless partition materializations.
        hours = {hour_partition_key(t.date(), t.hour) for t in event_times(bronze)}
        for path in (["silver", "shop_clicks"], ["gold", "events_per_minute"]):
            deadline = time.monotonic() + 60
            node = derived_node(port, path)
            while time.monotonic() < deadline and not node.get("assetMaterializations"):
                time.sleep(1.0)
                node = derived_node(port, path)
            derived = node.get("assetMaterializations") or []
            assert derived, f"the worker recorded no materialization of {path}: {node}"
            assert all(m["runId"] == "" for m in derived), "refreshed by the worker, not a run"
            assert {m["partition"] for m in derived} == hours
        silver_checks = {
            c["name"]: c["executionForLatestMaterialization"]
            for c in derived_node(port, ["silver", "shop_clicks"])["assetChecksOrError"]["checks"]
        }
        assert silver_checks["event_id_unique"]["status"] == "SUCCEEDED"
        assert silver_checks["matches_bronze"]["status"] == "SUCCEEDED"
        silver = DeltaTable(lake.uri(CLICKS.silver_path))
        assert silver.to_pyarrow_table().num_rows == 270
    finally:
        assert stop(worker) == 0
        os.killpg(webserver.pid, signal.SIGTERM)
        webserver.wait(30)
