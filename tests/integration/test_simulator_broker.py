"""The simulator against the embedded Kafka-protocol broker: the ledger matches what Kafka holds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from deltalake import DeltaTable

from tidelake.contracts import TOPICS
from tidelake.lake import Lake
from tidelake.ledger import LEDGER_PATH, LedgerKind
from tidelake.settings import KafkaSettings, LakeSettings, Settings
from tidelake.simulator import SimulatorConfig, run_simulation

pytestmark = pytest.mark.integration


def consume_all(kafka: KafkaSettings, expected: int) -> dict[tuple[str, int, int], bytes]:
    """Every record of the contract topics: (logical topic, partition, offset) → value.

    Reads from the beginning until ``expected`` records arrived or none came for 10 s. The high
    watermark is not used as the end: Tansu under-reports it.
    """
    conf: dict[str, Any] = kafka.client_config()
    conf.update({"group.id": "simulator-test", "enable.auto.commit": False})
    consumer = Consumer(conf)
    try:
        metadata = consumer.list_topics(timeout=10)
        assignments = [
            TopicPartition(physical, p, OFFSET_BEGINNING)
            for physical in (c.physical_topic(kafka.topic_prefix) for c in TOPICS.values())
            for p in metadata.topics[physical].partitions
        ]
        consumer.assign(assignments)
        records: dict[tuple[str, int, int], bytes] = {}
        while len(records) < expected:
            msg = consumer.poll(10.0)
            if msg is None:
                break
            assert msg.error() is None, msg.error()
            logical = msg.topic().removeprefix(kafka.topic_prefix)
            records[logical, msg.partition(), msg.offset()] = msg.value()
        return records
    finally:
        consumer.close()


def test_every_ledger_row_points_at_the_record_kafka_holds(
    kafka_settings: KafkaSettings, local_lake_settings: LakeSettings
) -> None:
    settings = Settings(kafka=kafka_settings, lake=local_lake_settings)
    config = SimulatorConfig(
        seed=11,
        duration=None,
        count=600,
        rate=600,
        late_min_seconds=1,
        late_max_seconds=2,
        duplicate_fraction=0.05,
        malformed_fraction=0.05,
    )
    summary = run_simulation(settings, config, progress=False)
    assert summary.ok and summary.delivered == 600

    ledger = Lake.from_settings(local_lake_settings).open(LEDGER_PATH)
    assert ledger is not None
    rows = ledger.to_pyarrow_table().to_pylist()
    records = consume_all(kafka_settings, expected=600)
    assert len(rows) == len(records) == 600
    for row in rows:
        value = records[row["topic"], row["partition"], row["offset"]]
        if row["kind"] != LedgerKind.MALFORMED and row["event_id"]:
            assert row["event_id"].encode() in value
    kinds = {r["kind"] for r in rows}
    assert kinds == {k.value for k in LedgerKind}


def test_the_simulate_command_produces_and_ledgers_a_bounded_run(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TIDELAKE_", "AWS_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers or "",
            "TIDELAKE_TOPIC_PREFIX": kafka_settings.topic_prefix,
            "LAKE_URI": str(tmp_path / "lake"),
        }
    )
    result = subprocess.run(
        [
            *(sys.executable, "-m", "tidelake.cli", "simulate", "--count=300", "--rate=300"),
            *("--late-min-seconds=1", "--late-max-seconds=2", "--malformed-fraction=0.1"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "delivered 300, failed 0" in result.stderr
    assert "late pending" in result.stderr
    table = DeltaTable(str(tmp_path / "lake" / LEDGER_PATH)).to_pyarrow_table()
    assert table.num_rows == 300
