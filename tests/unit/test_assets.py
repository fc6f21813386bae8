"""Bronze assets materialized against the in-memory FakeKafka and a temporary local lake."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import polars as pl
import pytest
from deltalake import write_deltalake

from assets.bronze import (
    BRONZE_CHECK_NAMES,
    CONTIGUOUS_OFFSETS,
    CONTRACT_SCHEMA,
    QUARANTINE_KEY,
    UNIQUE_COORDINATES,
    bronze_key,
    build_bronze_layer,
)
from resources import FakeKafkaResource, IngestResource, LakeResource
from tidelake.contracts import TOPICS, TopicContract
from tidelake.fake_kafka import FakeKafka

PREFIX = "unit."
CONTRACT = TOPICS["shop.purchases"]


def event(contract: TopicContract, i: int, event_time: datetime | None = None) -> dict[str, Any]:
    """A valid message of ``contract``: every field filled by kind."""
    when = (event_time or datetime.now(UTC)).isoformat()
    values: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": sorted(contract.event_types)[0],
        "event_time": when,
    }
    for f in contract.fields:
        values[f.name] = {"string": f"{f.name}-{i}", "int": 1 + i, "float": 1.5, "timestamp": when}[
            f.kind
        ]
    return values


def produce(fake: FakeKafka, contract: TopicContract, n: int, start: int = 0) -> None:
    topic = contract.physical_topic(PREFIX)
    for i in range(start, start + n):
        fake.produce(topic, orjson.dumps(event(contract, i)), key=f"user-{i}".encode())


@pytest.fixture
def fake() -> FakeKafka:
    kafka = FakeKafka()
    for c in TOPICS.values():
        kafka.create_topic(c.physical_topic(PREFIX), partitions=3)
    return kafka


@pytest.fixture
def resources(fake: FakeKafka, tmp_path: Path) -> dict[str, Any]:
    return {
        "kafka": FakeKafkaResource(fake, topic_prefix=PREFIX, consumer_group="unit"),
        "lake": LakeResource(uri=str(tmp_path / "lake")),
        "ingest": IngestResource(quiet_seconds=0.05),
    }


def materialize(resources: dict[str, Any], contract: TopicContract = CONTRACT) -> Any:
    specs, assets = build_bronze_layer([contract])
    return dg.materialize(
        [*specs, *assets],
        resources=resources,
        selection=[bronze_key(contract)],
        raise_on_error=False,
    )


def checks_by_name(result: Any) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_bronze_asset_reports_the_batch_and_passes_its_checks(
    fake: FakeKafka, resources: dict[str, Any]
) -> None:
    produce(fake, CONTRACT, 60)
    fake.produce(CONTRACT.physical_topic(PREFIX), b"{not json", key=b"user-x")
    late = event(CONTRACT, 99, datetime.now(UTC) - timedelta(hours=5))
    fake.produce(CONTRACT.physical_topic(PREFIX), orjson.dumps(late), key=b"user-99")

    result = materialize(resources)

    assert result.success
    [mat] = [
        m for m in result.get_asset_materialization_events() if m.asset_key == bronze_key(CONTRACT)
    ]
    meta = {k: v.value for k, v in mat.materialization.metadata.items()}
    assert meta["rows"] == 61
    assert meta["invalid"] == 1
    assert meta["invalid_by_reason"] == {"malformed_json": 1}
    assert meta["records"] == 62
    assert meta["late_count"] == 1  # reached Kafka 5 h after its event_time
    assert meta["max_lateness_seconds"] >= 5 * 3600 - 60
    assert meta["duplicate_event_ids"] == 0
    assert len(meta["partitions_touched"]) >= 2
    assert all(len(k) == len("2026-01-01-00:00") for k in meta["partitions_touched"])
    assert meta["bronze_version"] >= 1
    assert sum(b - a for a, b in meta["offsets"].values()) == 62
    assert meta["dagster/row_count"] == 61
    assert set(meta["stage_seconds"]) >= {"setup", "consume", "decode", "write_bronze"}

    checks = checks_by_name(result)
    assert set(checks) == set(BRONZE_CHECK_NAMES)
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}

    # The quarantine table gets a materialization from the run that appended to it.
    quarantined = [
        m for m in result.get_asset_materialization_events() if m.asset_key == QUARANTINE_KEY
    ]
    assert len(quarantined) == 1


def test_a_second_run_reads_only_new_records(fake: FakeKafka, resources: dict[str, Any]) -> None:
    produce(fake, CONTRACT, 30)
    assert materialize(resources).success
    produce(fake, CONTRACT, 9, start=30)

    result = materialize(resources)

    assert result.success
    [mat] = [
        m for m in result.get_asset_materialization_events() if m.asset_key == bronze_key(CONTRACT)
    ]
    assert mat.materialization.metadata["rows"].value == 9
    assert mat.materialization.metadata["dagster/row_count"].value == 39
    assert all(c.passed for c in checks_by_name(result).values())


def test_duplicate_coordinates_written_directly_fail_the_uniqueness_check(
    fake: FakeKafka, resources: dict[str, Any], tmp_path: Path
) -> None:
    produce(fake, CONTRACT, 20)
    assert materialize(resources).success
    uri = str(tmp_path / "lake" / CONTRACT.bronze_path)
    # Corrupt bronze: outside the protocol, write two rows at coordinates the next batch will
    # also write (the checks read what a batch added, so the duplicates are in its window).
    produce(fake, CONTRACT, 6, start=20)
    ends = fake.end_offsets(CONTRACT.physical_topic(PREFIX))
    rows = pl.read_delta(uri).sort("_offset").group_by("_partition").first()
    rows = rows.with_columns(_offset=pl.col("_partition").replace_strict(ends) - 1).head(2)
    write_deltalake(uri, rows.select(pl.read_delta(uri).columns).to_arrow(), mode="append")

    result = materialize(resources)

    assert not result.success  # a blocking check failed
    checks = checks_by_name(result)
    assert not checks[UNIQUE_COORDINATES].passed
    assert checks[UNIQUE_COORDINATES].metadata["duplicate_coordinates"].value == 2
    assert checks[CONTIGUOUS_OFFSETS].passed  # repeats are not gaps
    assert checks[CONTRACT_SCHEMA].passed


def test_an_empty_topic_materializes_zero_rows_and_passes(resources: dict[str, Any]) -> None:
    result = materialize(resources)

    assert result.success
    assert all(c.passed for c in checks_by_name(result).values())
