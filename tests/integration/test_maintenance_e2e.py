"""Maintenance racing the real ingestion engine on the same closed hour partitions.

The engine keeps appending micro-batches that carry late events into hours maintenance treats
as closed, while maintenance compacts those very hours again and again. At every compaction the
hook waits until an append has landed after the compaction's snapshot, so every compaction
commits over a concurrent append (the race is forced, not hoped for). Afterwards nothing is
lost or twice, the offsets are contiguous and every per-batch check still passes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from tidelake.contracts import QUARANTINE_PATH, TOPICS
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import BatchReport, IngestEngine, app_id
from tidelake.lake import Lake
from tidelake.maintenance import MaintenanceReport, maintain_table
from tidelake.maintenance.plan import Partition
from tidelake.quality.bronze import check_unique_coordinates
from tidelake.quality.contiguity import check_offsets_contiguous
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings

CLICKS = TOPICS["shop.clicks"]
GROUP = "g"
KAFKA = KafkaSettings(consumer_group=GROUP)
NOW = datetime.now(UTC)
CLOSED = [NOW - timedelta(hours=h) for h in (12, 11, 10)]
HORIZON = 6
ROUNDS = 25


def click(at: datetime) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "click",
            "event_time": at.isoformat(),
            "user_id": "u",
            "session_id": "s",
            "product_id": "p",
            "element": "e",
        }
    )


def files_in(table: DeltaTable, partition: Partition) -> int:
    actions = pa.table(table.get_add_actions(flatten=True))
    want = dict(partition.values)
    cols = {k: actions.column(f"partition.{k}").to_pylist() for k in want}
    return sum(all(cols[k][i] == v for k, v in want.items()) for i in range(actions.num_rows))


@pytest.mark.slow
def test_maintenance_racing_the_engine_on_the_same_hours_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    lake = Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))
    kafka = FakeKafka()
    kafka.create_topic(CLICKS.name, partitions=2)
    engine = IngestEngine(
        lake, KAFKA, IngestSettings(quiet_seconds=0.02), consumer_factory=kafka.consumer_factory
    )
    produced = {"valid": 0}
    batches: list[BatchReport] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def produce_round(i: int) -> None:
        # Late events into every closed hour, current ones, and one malformed record.
        for j, at in enumerate([*CLOSED, NOW, *CLOSED]):
            kafka.produce(CLICKS.name, click(at), partition=(i + j) % 2)
            produced["valid"] += 1
        kafka.produce(CLICKS.name, b"{not json", partition=i % 2)

    def ingest() -> None:
        try:
            for i in range(ROUNDS):
                produce_round(i)
                batches.append(engine.ingest_topic(CLICKS))
                time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    for i in range(3):  # every hour starts with a few files
        produce_round(i)
        batches.append(engine.ingest_topic(CLICKS))

    raced = Counter[str]()

    def wait_for_an_append(partition: Partition, snapshot: DeltaTable) -> None:
        deadline = time.monotonic() + 3.0
        while not done.is_set() and time.monotonic() < deadline:
            now = lake.open(CLICKS.bronze_path)
            if now is not None and now.version() > snapshot.version():
                raced["commits"] += 1
                if files_in(now, partition) > files_in(snapshot, partition):
                    raced["same_partition"] += 1
                return
            time.sleep(0.005)

    def one_pass() -> list[MaintenanceReport]:
        # Quarantine's ingest day is today; two days on it is closed, so its appends race too.
        return [
            maintain_table(
                lake,
                CLICKS.bronze_path,
                now=NOW,
                horizon_hours=HORIZON,
                on_snapshot=wait_for_an_append,
            ),
            maintain_table(
                lake, QUARANTINE_PATH, now=NOW + timedelta(days=2), horizon_hours=HORIZON
            ),
        ]

    reports: list[MaintenanceReport] = []
    appender = threading.Thread(target=ingest)
    appender.start()
    try:
        while not done.is_set():
            reports += one_pass()
    finally:
        appender.join(timeout=60)
    assert not errors, errors
    final = maintain_table(lake, CLICKS.bronze_path, now=NOW, horizon_hours=HORIZON)

    # The race happened, on the very partitions being compacted.
    compactions = sum(len(r.partitions_compacted) for r in reports)
    assert compactions >= 3
    assert raced["same_partition"] >= 1, raced
    assert sum(r.interleaved_commits for r in reports) >= 1
    assert all(r.ok and not r.partitions_skipped for r in reports)
    assert any(r.partitions_compacted for r in reports if r.path == QUARANTINE_PATH)
    print(f"{compactions} compactions, raced {dict(raced)}, {len(batches)} batches")

    # Nothing lost, nothing twice, positions exact.
    bronze = lake.open(CLICKS.bronze_path)
    assert bronze is not None
    rows = bronze.to_pyarrow_table(columns=["_partition", "_offset"])
    coords = Counter(zip(rows["_partition"].to_pylist(), rows["_offset"].to_pylist(), strict=True))
    assert rows.num_rows == produced["valid"]
    assert max(coords.values()) == 1
    ends = kafka.end_offsets(CLICKS.name)
    assert {p: bronze.transaction_version(app_id(GROUP, CLICKS.name, p)) for p in ends} == ends
    assert check_offsets_contiguous(lake, CLICKS, KAFKA).passed
    assert check_unique_coordinates(lake, CLICKS).passed
    quarantine = lake.open(QUARANTINE_PATH)
    assert quarantine is not None and quarantine.count() == len(batches)
    # Every batch's own checks read correctly beside the maintenance commits in between.
    for b in batches:
        assert check_offsets_contiguous(lake, CLICKS, KAFKA, b.window, b.since_version).passed
        assert check_unique_coordinates(lake, CLICKS, b.window, b.since_version).passed
    # Once the appenders stop, every closed hour ends as one file.
    assert final.ok and not final.partitions_skipped
    open_label = f"event_date={NOW.date().isoformat()}/event_hour={NOW.hour}"
    actions = pa.table(bronze.get_add_actions(flatten=True))
    per_hour = Counter(
        f"event_date={d.isoformat()}/event_hour={h}"
        for d, h in zip(
            actions.column("partition.event_date").to_pylist(),
            actions.column("partition.event_hour").to_pylist(),
            strict=True,
        )
    )
    assert {k: v for k, v in per_hour.items() if k != open_label} == {
        f"event_date={c.date().isoformat()}/event_hour={c.hour}": 1 for c in CLOSED
    }
