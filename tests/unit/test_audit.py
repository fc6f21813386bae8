"""The whole-table bronze audit: ``tidelake audit`` and the daily Dagster audit checks, on a
temporary lake ingested from the in-memory FakeKafka by the real engine.

The audit exists for what the per-batch checks cannot see: a problem outside the window of the
batch being checked. So the failing cases damage an *old* batch, ingest a new one, show that the
new batch's windowed check passes, and then that the audit still fails.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from assets.bronze import BRONZE_CHECK_NAMES, bronze_key
from assets.bronze.audit import (
    AUDIT_CHECK_NAMES,
    AUDIT_CONTIGUOUS_OFFSETS,
    AUDIT_UNIQUE_COORDINATES,
)
from pipeline_defs.definitions import AUDIT_JOB_NAME, build_definitions
from resources import FakeKafkaResource, LakeResource
from tidelake.cli import main
from tidelake.contracts import TOPICS
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import BatchReport, IngestEngine
from tidelake.ingest.gaps import accept_gap
from tidelake.lake import Lake
from tidelake.quality import audit
from tidelake.quality.bronze import (
    CheckOutcome,
    check_offsets_contiguous,
    check_unique_coordinates,
)
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings

CONTRACT = TOPICS["shop.searches"]
OTHER = TOPICS["shop.clicks"]
PREFIX = "audit."
GROUP = "audit-group"
KAFKA = KafkaSettings(topic_prefix=PREFIX, consumer_group=GROUP)
TOPIC = CONTRACT.physical_topic(PREFIX)


def search(i: int) -> bytes:
    """A valid ``shop.searches`` message."""
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "search",
            "event_time": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
            "user_id": f"u{i}",
            "session_id": "s1",
            "query": "red shoes",
            "results_count": 3,
        }
    )


@dataclass
class Stream:
    """One topic on a FakeKafka, ingested into a temporary lake by the real engine."""

    fake: FakeKafka
    lake: Lake

    def produce(self, per_partition: int, partitions: tuple[int, ...] = (0, 1)) -> None:
        for p in partitions:
            for i in range(per_partition):
                self.fake.produce(TOPIC, search(i), key=f"u{i}".encode(), partition=p)

    def ingest(self) -> BatchReport:
        engine = IngestEngine(
            self.lake,
            KAFKA,
            IngestSettings(quiet_seconds=0.05),
            consumer_factory=self.fake.consumer_factory,
        )
        return engine.ingest_topic(CONTRACT)

    def bronze(self) -> DeltaTable:
        return DeltaTable(self.lake.uri(CONTRACT.bronze_path))


@pytest.fixture
def stream(tmp_path: Path) -> Stream:
    fake = FakeKafka()
    fake.create_topic(TOPIC, partitions=2)
    return Stream(fake, Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake"))))


@pytest.fixture
def env(clean_env: Path, stream: Stream, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``tidelake audit`` reads: the lake, the topic prefix and the consumer group."""
    monkeypatch.setenv("LAKE_URI", stream.lake.root)
    monkeypatch.setenv("TIDELAKE_TOPIC_PREFIX", PREFIX)
    monkeypatch.setenv("TIDELAKE_CONSUMER_GROUP", GROUP)


def run_audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["audit", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def line_of(output: str, topic: str, check: str) -> str:
    [line] = [ln for ln in output.splitlines() if ln.split()[:2] == [topic, check]]
    return line


def windowed(stream: Stream, report: BatchReport) -> dict[str, CheckOutcome]:
    """The per-batch checks of ``report``'s window, as every ingestion run evaluates them."""
    return {
        "unique": check_unique_coordinates(
            stream.lake, CONTRACT, report.window, report.since_version
        ),
        "contiguous": check_offsets_contiguous(
            stream.lake, CONTRACT, KAFKA, report.window, report.since_version
        ),
    }


def delete_offset(stream: Stream, partition: int, offset: int) -> None:
    """A row removed behind the protocol's back (a file rewritten by hand, a stray DELETE)."""
    stream.bronze().delete(f"_partition = {partition} AND _offset = {offset}")


def duplicate_offset(stream: Stream, partition: int, offset: int) -> None:
    """A row written a second time by a writer that does not use the txn protocol."""
    rows = stream.bronze().to_pyarrow_table()
    mask = pc.and_(pc.equal(rows["_partition"], partition), pc.equal(rows["_offset"], offset))
    write_deltalake(stream.bronze(), rows.filter(mask), mode="append")


def test_the_audit_check_names_are_the_per_batch_check_names() -> None:
    # The CLI prints these names; the Dagster audit checks are them with an ``audit_`` prefix.
    assert audit.AUDIT_CHECKS == BRONZE_CHECK_NAMES
    assert tuple(f"audit_{name}" for name in BRONZE_CHECK_NAMES[:2]) == AUDIT_CHECK_NAMES


def test_a_clean_lake_passes_with_one_line_per_topic_and_check(
    stream: Stream, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stream.produce(10)
    stream.fake.produce(TOPIC, b"{not json", key=b"x", partition=1)
    stream.ingest()

    code, out, _ = run_audit(capsys)

    assert code == 0, out
    assert out.splitlines()[0].endswith("6 topics, 18 checks, all passed")
    assert len(out.splitlines()) == 1 + 18
    unique = line_of(out, CONTRACT.name, audit.UNIQUE_COORDINATES)
    assert " ok " in unique and "rows=20 duplicate_coordinates=0" in unique
    contiguous = line_of(out, CONTRACT.name, audit.CONTIGUOUS_OFFSETS)
    # 20 valid rows in bronze and the malformed one in quarantine: all 21 offsets accounted for.
    assert "rows=21 partitions=2 missing_offsets=0" in contiguous
    assert "rows=20 schema_failures=0" in line_of(out, CONTRACT.name, audit.CONTRACT_SCHEMA)
    # A topic that was never ingested has no table: nothing yet, nothing lost.
    other = line_of(out, OTHER.name, audit.CONTIGUOUS_OFFSETS)
    assert " ok " in other and "does not exist yet" in other


def test_an_old_deleted_offset_fails_the_audit_though_the_next_batch_passes_its_window(
    stream: Stream, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stream.produce(10)
    stream.ingest()
    delete_offset(stream, partition=1, offset=4)
    stream.produce(10)
    later = stream.ingest()
    assert later.window == {0: (10, 20), 1: (10, 20)}

    outcomes = windowed(stream, later)
    assert all(o.passed for o in outcomes.values()), {k: o.description for k, o in outcomes.items()}

    code, out, _ = run_audit(capsys, "--topics", CONTRACT.name)

    assert code == 1
    line = line_of(out, CONTRACT.name, audit.CONTIGUOUS_OFFSETS)
    assert "FAIL" in line
    assert "missing_offsets=1" in line
    assert "partition 1 offset 4 missing" in line
    assert " ok " in line_of(out, CONTRACT.name, audit.UNIQUE_COORDINATES)


def test_an_old_duplicate_fails_the_audit_though_the_next_batch_passes_its_window(
    stream: Stream, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stream.produce(10)
    stream.ingest()
    duplicate_offset(stream, partition=0, offset=2)
    stream.produce(10)
    later = stream.ingest()

    outcomes = windowed(stream, later)
    assert all(o.passed for o in outcomes.values()), {k: o.description for k, o in outcomes.items()}

    code, out, _ = run_audit(capsys, "--topics", CONTRACT.name)

    assert code == 1
    line = line_of(out, CONTRACT.name, audit.UNIQUE_COORDINATES)
    assert "FAIL" in line
    assert "rows=41 duplicate_coordinates=1 extra_rows=1" in line
    assert "partition 0 offset 2 written 2 times" in line
    # A repeated coordinate is not a gap: contiguity still holds.
    assert " ok " in line_of(out, CONTRACT.name, audit.CONTIGUOUS_OFFSETS)


def test_skipped_offsets_and_an_accepted_gap_pass_and_are_counted(
    stream: Stream, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stream.produce(5, partitions=(0,))
    stream.fake.produce_marker(TOPIC, 0, count=2)  # offsets 5-6: transaction markers
    stream.produce(3, partitions=(0,))  # 7-9
    stream.ingest()
    stream.produce(10, partitions=(0,))  # 10-19
    stream.fake.expire(TOPIC, 0, before=15)  # 10-14 expired before they were ingested
    engine = IngestEngine(stream.lake, KAFKA, consumer_factory=stream.fake.consumer_factory)
    accept_gap(engine, CONTRACT, 0, 15, reason="retention ran out during an outage", by="ops")
    stream.ingest()

    code, out, _ = run_audit(capsys, "--topic", CONTRACT.name, "--json")

    assert code == 0, out
    report = json.loads(out)
    [contiguous] = [c for c in report["checks"] if c["check"] == audit.CONTIGUOUS_OFFSETS]
    assert contiguous["passed"] is True
    assert contiguous["figures"]["skipped_offsets"] == 2
    assert contiguous["figures"]["accepted_gap_offsets"] == 5
    assert contiguous["figures"]["missing_offsets"] == 0
    [gap] = contiguous["metadata"]["accepted_gaps"]
    assert (gap["partition"], gap["first"], gap["last"], gap["by"]) == (0, 10, 14, "ops")
    assert "2 skipped" in contiguous["description"]
    assert "5 accepted as lost" in contiguous["description"]


def test_the_json_report_parses_with_figures_and_problems_per_topic_and_check(
    stream: Stream, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stream.produce(10)
    stream.ingest()
    delete_offset(stream, partition=0, offset=7)

    code, out, _ = run_audit(capsys, "--topics", f"{CONTRACT.name},{OTHER.name}", "--json")

    assert code == 1
    report = json.loads(out)
    assert (report["passed"], report["exit_code"], report["failed"]) == (False, 1, 1)
    assert [(c["topic"], c["check"]) for c in report["checks"]] == [
        (t, check) for t in (CONTRACT.name, OTHER.name) for check in audit.AUDIT_CHECKS
    ]
    [failed] = [c for c in report["checks"] if not c["passed"]]
    assert failed["check"] == audit.CONTIGUOUS_OFFSETS
    assert failed["physical_topic"] == TOPIC
    assert failed["table"] == CONTRACT.bronze_path
    assert failed["figures"]["missing_offsets"] == 1
    assert failed["problems"] == ["partition 0 offset 7 missing"]
    assert failed["metadata"]["gap_examples"] == [
        {"_partition": 0, "first_missing": 7, "last_missing": 7}
    ]


def test_an_unknown_topic_is_a_usage_error_naming_the_valid_topics(
    env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_audit(capsys, "--topics", "shop.clicks,shop.nope")

    assert code == 2
    assert out == ""
    assert "unknown topic(s) shop.nope" in err
    assert all(name in err for name in TOPICS)


def test_an_unusable_setting_is_a_configuration_error(
    env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "CARRIER_PIGEON")

    code, _, err = run_audit(capsys)

    assert code == 2
    assert "KAFKA_SECURITY_PROTOCOL" in err


def test_a_check_that_cannot_run_fails_the_audit_and_the_other_checks_still_run(
    stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream.produce(3)
    stream.ingest()

    def unreadable(*_: Any) -> CheckOutcome:
        raise OSError("object store unreachable")

    monkeypatch.setitem(audit.WHOLE_TABLE_CHECKS, audit.CONTRACT_SCHEMA, unreadable)

    report = audit.audit_bronze(stream.lake, KAFKA, [CONTRACT, OTHER])

    assert report.exit_code == 1
    assert [(c.topic, c.check) for c in report.failed] == [
        (CONTRACT.name, audit.CONTRACT_SCHEMA),
        (OTHER.name, audit.CONTRACT_SCHEMA),
    ]
    assert "OSError: object store unreachable" in report.failed[0].outcome.description
    assert all(c.passed for c in report.checks if c.check != audit.CONTRACT_SCHEMA)


# -- the Dagster audit checks ------------------------------------------------------------------


def run_audit_job(stream: Stream) -> Any:
    """The ``bronze_audit`` job as the code location defines it, with a fake Kafka resource."""
    job = build_definitions({"TIDELAKE_ENV": "test"}).resolve_job_def(AUDIT_JOB_NAME)
    return job.execute_in_process(
        resources={
            "kafka": FakeKafkaResource(stream.fake, topic_prefix=PREFIX, consumer_group=GROUP),
            "lake": LakeResource(uri=stream.lake.root),
        },
        raise_on_error=False,
    )


def test_the_audit_job_passes_every_audit_check_on_a_clean_lake(
    stream: Stream, clean_env: Path
) -> None:
    stream.produce(10)
    stream.ingest()

    result = run_audit_job(stream)

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert {(e.asset_key, e.check_name) for e in evaluations} == {
        (bronze_key(c), name) for c in TOPICS.values() for name in AUDIT_CHECK_NAMES
    }
    assert all(e.passed for e in evaluations), [e.description for e in evaluations]
    [contiguous] = [
        e
        for e in evaluations
        if e.asset_key == bronze_key(CONTRACT) and e.check_name == AUDIT_CONTIGUOUS_OFFSETS
    ]
    assert contiguous.metadata["bronze_rows"].value == 20
    assert contiguous.metadata["scope"].value == "whole table"


def test_the_audit_job_warns_about_old_problems_without_failing_the_run(
    stream: Stream, clean_env: Path
) -> None:
    stream.produce(10)
    stream.ingest()
    delete_offset(stream, partition=1, offset=4)
    duplicate_offset(stream, partition=0, offset=2)
    stream.produce(10)
    assert all(o.passed for o in windowed(stream, stream.ingest()).values())

    result = run_audit_job(stream)

    assert result.success, "an old problem must be seen, not fail (or block) anything"
    ours = {
        e.check_name: e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == bronze_key(CONTRACT)
    }
    assert {n: e.passed for n, e in ours.items()} == dict.fromkeys(AUDIT_CHECK_NAMES, False)
    assert {e.severity.value for e in ours.values()} == {"WARN"}
    assert "partition 1 offset 4 missing" in ours[AUDIT_CONTIGUOUS_OFFSETS].description
    assert ours[AUDIT_CONTIGUOUS_OFFSETS].metadata["missing_offsets"].value == 1
    assert "partition 0 offset 2 written 2 times" in ours[AUDIT_UNIQUE_COORDINATES].description
    others = [
        e for e in result.get_asset_check_evaluations() if e.asset_key != bronze_key(CONTRACT)
    ]
    assert others and all(e.passed for e in others)
