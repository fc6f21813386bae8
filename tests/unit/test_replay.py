"""Quarantine replay through the real engine: FakeKafka → ingest → change the contract → replay."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from tidelake import cli
from tidelake.contracts import QUARANTINE_PATH, QUARANTINE_SCHEMA, TOPICS
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import IngestEngine, app_id
from tidelake.ingest import replay as replay_mod
from tidelake.ingest.annotations import read_annotations
from tidelake.ingest.decode import ChunkDecoder
from tidelake.ingest.replay import replay_app_id, replay_quarantine
from tidelake.ingest.replay_judge import judge
from tidelake.ingest.replay_result import ReplayResult, ReplayUsageError
from tidelake.lake import Lake
from tidelake.quality.bronze import check_offsets_contiguous, check_unique_coordinates
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings

BASE = TOPICS["shop.searches"]
NEW_TYPE = "search_suggestion"
FIXED = dataclasses.replace(BASE, event_types=BASE.event_types | {NEW_TYPE})
"""The contract after the fix: the event type producers started sending is now allowed."""
GROUP = "replay-test"
KAFKA = KafkaSettings(consumer_group=GROUP)
SMALL_LIMIT = 700
"""A message limit the padded records exceed, so ingestion quarantines them as oversized."""


def search(
    event_type: str = "search", padding: int = 0, event_time: datetime | None = None
) -> bytes:
    record: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "event_time": (event_time or datetime.now(UTC)).isoformat(),
        "user_id": "u1",
        "session_id": "s1",
        "query": "red shoes",
        "results_count": 3,
    }
    if padding:
        record["notes"] = "x" * padding  # not in the contract: ignored, but counts as size
    return orjson.dumps(record)


@pytest.fixture
def kafka() -> FakeKafka:
    fake = FakeKafka()
    fake.create_topic(BASE.name, partitions=3)
    return fake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))


def ingest(kafka: FakeKafka, lake: Lake, max_message_bytes: int = SMALL_LIMIT) -> None:
    settings = IngestSettings(quiet_seconds=0.05, max_message_bytes=max_message_bytes)
    IngestEngine(lake, KAFKA, settings, consumer_factory=kafka.consumer_factory).ingest_topic(BASE)


def fill(kafka: FakeKafka, lake: Lake, n: int = 60) -> dict[str, set[tuple[int, int]]]:
    """Produce a mix (valid, new event type, oversized, malformed) and ingest it.

    Returns the coordinates of each kind.
    """
    kinds: dict[str, set[tuple[int, int]]] = {
        "valid": set(),
        "new": set(),
        "big": set(),
        "bad": set(),
    }
    for i in range(n):
        kind = ("new", "big", "bad", "valid", "valid")[i % 5]
        value = {
            "new": search(NEW_TYPE),
            "big": search(padding=1_000),
            "bad": b'{"event_id": ',
            "valid": search(),
        }[kind]
        coord = kafka.produce(BASE.name, value, key=f"user-{i}".encode())
        kinds[kind].add(coord)
    ingest(kafka, lake)
    return kinds


def table(lake: Lake, path: str) -> pa.Table:
    return DeltaTable(lake.uri(path)).to_pyarrow_table()


def quarantined(lake: Lake) -> pa.Table:
    q = table(lake, QUARANTINE_PATH)
    return q.filter(pa.compute.equal(q["_topic"], BASE.name))


def coords(t: pa.Table) -> set[tuple[int, int]]:
    return set(zip(t["_partition"].to_pylist(), t["_offset"].to_pylist(), strict=True))


def rows_by_coord(t: pa.Table) -> dict[tuple[int, int], dict[str, Any]]:
    return {(r["_partition"], r["_offset"]): r for r in t.to_pylist()}


def versions(lake: Lake) -> tuple[int, int]:
    return DeltaTable(lake.uri(BASE.bronze_path)).version(), DeltaTable(
        lake.uri(QUARANTINE_PATH)
    ).version()


def every_offset_once(kafka: FakeKafka, lake: Lake) -> None:
    b, q = coords(table(lake, BASE.bronze_path)), coords(quarantined(lake))
    produced = {(p, o) for p, end in kafka.end_offsets(BASE.name).items() for o in range(end)}
    assert b | q == produced, "an offset is in neither bronze nor quarantine"
    assert not b & q, "an offset is in both bronze and quarantine"
    assert check_offsets_contiguous(lake, FIXED, KAFKA).passed
    assert check_unique_coordinates(lake, FIXED).passed


def replay(lake: Lake, **kw: Any) -> ReplayResult:
    kw.setdefault("contracts", [FIXED])
    return replay_quarantine(lake, KAFKA, kw.pop("ingest", IngestSettings()), **kw)


# -- moving ---------------------------------------------------------------------------------------


def test_records_that_now_pass_move_to_bronze_with_their_original_coordinates_and_arrival(
    kafka: FakeKafka, lake: Lake
) -> None:
    kinds = fill(kafka, lake)
    before = rows_by_coord(quarantined(lake))
    positions = {
        p: DeltaTable(lake.uri(BASE.bronze_path)).transaction_version(app_id(GROUP, BASE.name, p))
        for p in range(3)
    }

    result = replay(lake)

    topic = result.topics[0]
    assert result.exit_code == 0 and topic.error is None
    # New event type under the fixed contract, and oversized under the default 256 KiB limit.
    moved = kinds["new"] | kinds["big"]
    assert topic.moved == len(moved)
    assert topic.moved_by_reason == {"unknown_event_type": 12, "oversized": 12}
    assert topic.still_failing == {"malformed_json": {"malformed_json": 12}}
    bronze = rows_by_coord(table(lake, BASE.bronze_path))
    assert moved <= set(bronze)
    for coord in moved:
        row, original = bronze[coord], before[coord]
        assert row["_topic"] == BASE.name
        assert row["_ingested_at"] == original["_ingested_at"]
        assert row["_kafka_timestamp"] == original["_kafka_timestamp"]
        assert row["_key"] == original["key"].decode()
    assert coords(quarantined(lake)) == kinds["bad"]
    # Positions are the ingestion's, untouched: replayed offsets lie below them.
    after = DeltaTable(lake.uri(BASE.bronze_path))
    assert {
        p: after.transaction_version(app_id(GROUP, BASE.name, p)) for p in range(3)
    } == positions
    assert result.partitions_touched == topic.partitions_touched and topic.partitions_touched
    every_offset_once(kafka, lake)


def test_records_that_still_fail_stay_in_quarantine_exactly_as_they_were(
    kafka: FakeKafka, lake: Lake
) -> None:
    kinds = fill(kafka, lake)
    before = rows_by_coord(quarantined(lake))

    replay(lake, contracts=[BASE])  # the old contract: unknown event types still fail

    after = rows_by_coord(quarantined(lake))
    assert set(after) == kinds["new"] | kinds["bad"]
    for coord, row in after.items():
        assert row == before[coord]


def test_a_second_replay_changes_nothing(kafka: FakeKafka, lake: Lake) -> None:
    fill(kafka, lake)
    replay(lake)
    tables = versions(lake)
    bronze_before = table(lake, BASE.bronze_path).num_rows

    again = replay(lake)

    assert versions(lake) == tables
    assert table(lake, BASE.bronze_path).num_rows == bronze_before
    assert (again.topics[0].moved, again.topics[0].recovered, again.topics[0].commits) == (0, 0, 0)
    assert again.topics[0].still_failing == {"malformed_json": {"malformed_json": 12}}


def test_replay_commits_are_annotated_as_replay_on_both_tables(
    kafka: FakeKafka, lake: Lake
) -> None:
    fill(kafka, lake)
    start_b, start_q = versions(lake)

    replay(lake)

    bronze_commits = read_annotations(DeltaTable(lake.uri(BASE.bronze_path)), start_b)
    quarantine_commits = read_annotations(DeltaTable(lake.uri(QUARANTINE_PATH)), start_q)
    assert [c.annotation.kind for c in bronze_commits] == ["replay"]
    assert [c.annotation.kind for c in quarantine_commits] == ["replay"]
    assert quarantine_commits[0].annotation.stats["by_reason"] == {
        "unknown_event_type": 12,
        "oversized": 12,
    }
    stats = bronze_commits[0].annotation.stats
    assert stats["rows"] == 24 and stats["by_reason"] == {"unknown_event_type": 12, "oversized": 12}
    assert bronze_commits[0].annotation.topic == BASE.name
    assert bronze_commits[0].annotation.group == GROUP


def test_small_chunks_move_everything_in_several_commit_pairs(kafka: FakeKafka, lake: Lake) -> None:
    kinds = fill(kafka, lake)

    result = replay(lake, chunk_rows=5)

    assert result.topics[0].moved == len(kinds["new"] | kinds["big"])
    assert result.topics[0].commits >= 2 * (24 // 5)
    every_offset_once(kafka, lake)


def test_a_topic_whose_every_record_was_quarantined_gets_its_first_bronze_rows(
    kafka: FakeKafka, lake: Lake
) -> None:
    for i in range(9):
        kafka.produce(BASE.name, search(NEW_TYPE), key=f"u{i}".encode())
    ingest(kafka, lake)
    assert table(lake, BASE.bronze_path).num_rows == 0

    result = replay(lake)

    assert result.topics[0].moved == 9
    assert table(lake, BASE.bronze_path).num_rows == 9
    every_offset_once(kafka, lake)


# -- filtering and dry runs ------------------------------------------------------------------------


def test_reason_filter_moves_only_records_quarantined_for_that_reason(
    kafka: FakeKafka, lake: Lake
) -> None:
    kinds = fill(kafka, lake)

    result = replay(lake, reason="oversized")

    assert result.topics[0].moved_by_reason == {"oversized": 12}
    assert result.topics[0].still_failing == {}
    # The new event type would pass too, but was not asked for.
    assert coords(quarantined(lake)) == kinds["new"] | kinds["bad"]
    every_offset_once(kafka, lake)


def test_an_unknown_reason_is_refused_with_the_valid_ones(lake: Lake) -> None:
    with pytest.raises(ReplayUsageError, match="oversized") as err:
        replay(lake, reason="too_big")
    assert "unknown_event_type" in str(err.value)


def test_a_dry_run_changes_nothing_and_reports_what_would_move(
    kafka: FakeKafka, lake: Lake
) -> None:
    fill(kafka, lake)
    tables = versions(lake)
    q_before = quarantined(lake)

    result = replay(lake, dry_run=True, ingest=IngestSettings(max_message_bytes=SMALL_LIMIT))

    assert versions(lake) == tables
    assert quarantined(lake).equals(q_before)
    topic = result.topics[0]
    assert (topic.moved, topic.commits) == (12, 0)
    assert topic.moved_by_reason == {"unknown_event_type": 12}
    assert topic.still_failing == {
        "oversized": {"oversized": 12},
        "malformed_json": {"malformed_json": 12},
    }
    text = result.render()
    assert "would move 12" in text
    assert "unknown_event_type → now valid: 12" in text
    assert "oversized → still oversized: 12" in text


def test_a_dry_run_names_the_new_reason_of_a_record_that_now_fails_differently(
    kafka: FakeKafka, lake: Lake
) -> None:
    # Oversized under a small limit; under a large one it parses, and its event type is unknown.
    kafka.produce(BASE.name, search(NEW_TYPE, padding=1_000), key=b"u")
    ingest(kafka, lake)

    result = replay(lake, contracts=[BASE], dry_run=True)

    assert result.topics[0].still_failing == {"oversized": {"unknown_event_type": 1}}
    assert "oversized → now unknown_event_type: 1" in result.render()


# -- crashes, races, in-flight batches -------------------------------------------------------------


def test_a_crash_between_the_bronze_append_and_the_quarantine_delete_is_recovered_by_a_rerun(
    kafka: FakeKafka, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = fill(kafka, lake)
    real_delete = replay_mod.delete_from_quarantine
    crashes: list[int] = []

    def crash_once(table: DeltaTable, topic: str, source: pa.Table, annotation: Any) -> int:
        if annotation.stats["step"] == "move" and not crashes:
            crashes.append(1)
            raise RuntimeError("killed between the two commits")
        return real_delete(table, topic, source, annotation)

    monkeypatch.setattr(replay_mod, "delete_from_quarantine", crash_once)

    crashed = replay(lake)

    assert crashed.exit_code == 1 and "killed" in (crashed.topics[0].error or "")
    assert crashed.topics[0].partitions_touched, "the bronze append landed: its hours count"
    b, q = coords(table(lake, BASE.bronze_path)), coords(quarantined(lake))
    produced = {(p, o) for p, end in kafka.end_offsets(BASE.name).items() for o in range(end)}
    assert b | q == produced, "no offset may be in neither table"
    assert b & q == kinds["new"] | kinds["big"]
    assert not check_offsets_contiguous(lake, FIXED, KAFKA).passed

    tables = versions(lake)
    dry = replay(lake, dry_run=True)
    assert versions(lake) == tables
    assert (dry.topics[0].recovered, dry.topics[0].moved) == (24, 0)

    # Recovery ignores the reason filter: it is about the crashed run, not this one's selection.
    rerun = replay(lake, reason="malformed_json")

    assert rerun.exit_code == 0
    assert (rerun.topics[0].recovered, rerun.topics[0].moved) == (24, 0)
    every_offset_once(kafka, lake)


def test_a_replay_racing_another_replay_never_writes_a_record_twice(
    kafka: FakeKafka, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = fill(kafka, lake)
    real_write = replay_mod.write_bronze
    raced: list[ReplayResult] = []
    racing: list[int] = []

    def other_replay_first(*args: Any) -> None:
        if not racing:
            racing.append(1)
            # Another operator's replay commits between our read of bronze and our append.
            raced.append(replay(lake))
        real_write(*args)

    monkeypatch.setattr(replay_mod, "write_bronze", other_replay_first)

    ours = replay(lake)

    assert raced[0].topics[0].moved == len(kinds["new"] | kinds["big"])
    assert ours.exit_code == 0 and ours.topics[0].moved == 0
    every_offset_once(kafka, lake)
    bronze = DeltaTable(lake.uri(BASE.bronze_path))
    assert bronze.transaction_version(replay_app_id(GROUP, BASE.name)) == 1


def test_a_conflicting_bronze_commit_is_retried(
    kafka: FakeKafka, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = fill(kafka, lake)
    real_write = replay_mod.write_bronze
    calls: list[int] = []

    def conflict_once(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise CommitFailedError("concurrent transaction")
        real_write(*args)

    monkeypatch.setattr(replay_mod, "write_bronze", conflict_once)
    monkeypatch.setattr(replay_mod.time, "sleep", lambda s: None)

    result = replay(lake)

    assert len(calls) == 2 and result.topics[0].moved == len(kinds["new"] | kinds["big"])
    every_offset_once(kafka, lake)


def test_records_at_or_past_bronzes_position_are_left_for_their_batch(
    kafka: FakeKafka, lake: Lake
) -> None:
    fill(kafka, lake)
    # A batch whose quarantine commit landed and whose bronze commit has not (yet): its rows
    # are at bronze's stored position. Moving one would let the batch's retry write it again.
    position = DeltaTable(lake.uri(BASE.bronze_path)).transaction_version(
        app_id(GROUP, BASE.name, 0)
    )
    assert position is not None
    now = datetime.now(UTC)
    pending = pa.table(
        {
            "_topic": [BASE.name],
            "_partition": pa.array([0], pa.int32()),
            "_offset": pa.array([position], pa.int64()),
            "_kafka_timestamp": pa.array([now], pa.timestamp("us", tz="UTC")),
            "_ingested_at": pa.array([now], pa.timestamp("us", tz="UTC")),
            "key": [b"k"],
            "raw": [search(NEW_TYPE)],
            "error": ["unknown_event_type"],
            "error_detail": ["not allowed"],
            "ingest_date": pa.array([now.date()], pa.date32()),
        },
        schema=QUARANTINE_SCHEMA,
    )
    write_deltalake(lake.uri(QUARANTINE_PATH), pending, mode="append")

    result = replay(lake)

    assert result.topics[0].in_flight == 1
    assert (0, position) in coords(quarantined(lake))
    assert (0, position) not in coords(table(lake, BASE.bronze_path))


def test_a_topic_without_a_bronze_table_has_only_in_flight_records(lake: Lake) -> None:
    kafka = FakeKafka()
    kafka.create_topic(BASE.name, 1)
    kafka.produce(BASE.name, b"{oops", key=b"k")
    ingest(kafka, lake)
    other = TOPICS["shop.clicks"]

    result = replay(lake, contracts=[other])

    assert result.exit_code == 0
    assert (result.topics[0].moved, result.topics[0].in_flight) == (0, 0)


def test_no_quarantine_table_means_nothing_to_replay(lake: Lake) -> None:
    result = replay(lake)

    assert not result.quarantine_exists and result.exit_code == 0
    assert "nothing to replay" in result.render()


# -- the ingestion time each record is judged at ---------------------------------------------------


def test_each_record_is_judged_at_its_own_arrival_not_at_the_latest_one() -> None:
    t0 = datetime(2025, 3, 1, 0, 0, 0, 123457, tzinfo=UTC)
    hour = timedelta(hours=1)
    cases = [  # (arrival, event_time, expected outcome) with a 1 h future horizon
        (t0, t0 + hour / 2, "valid"),
        (t0 + 10 * hour, t0 + 10.5 * hour, "valid"),
        (t0 + 10 * hour, t0 + 12 * hour, "absurd_timestamp"),  # a later arrival would accept it
        (t0 + 20 * hour, t0 + 20.5 * hour, "valid"),
        (t0 + 20 * hour, t0 + 25 * hour, "absurd_timestamp"),
        (t0 + 10 * hour, t0 + 40 * hour, "absurd_timestamp"),
    ]
    rows = pa.table(
        {
            "_topic": [BASE.name] * len(cases),
            "_partition": pa.array([0] * len(cases), pa.int32()),
            "_offset": pa.array(range(len(cases)), pa.int64()),
            "_kafka_timestamp": pa.array([a for a, _, _ in cases], pa.timestamp("us", tz="UTC")),
            "_ingested_at": pa.array([a for a, _, _ in cases], pa.timestamp("us", tz="UTC")),
            "key": [b"k"] * len(cases),
            "raw": [search(event_time=e) for _, e, _ in cases],
            "error": ["absurd_timestamp"] * len(cases),
            "error_detail": ["-"] * len(cases),
            "ingest_date": pa.array([a.date() for a, _, _ in cases], pa.date32()),
        },
        schema=QUARANTINE_SCHEMA,
    )
    decoder = ChunkDecoder(BASE, max_future_seconds=3600)
    try:
        judged = judge(decoder, BASE.name, rows)
    finally:
        decoder.close()

    valid = {r["_offset"]: r["_ingested_at"] for r in judged.valid.to_pylist()}
    assert set(valid) == {i for i, (_, _, want) in enumerate(cases) if want == "valid"}
    for offset, ingested_at in valid.items():
        assert ingested_at == cases[offset][0]  # to the microsecond
    assert judged.still_failing == {("absurd_timestamp", "absurd_timestamp"): 3}


# -- the command line ------------------------------------------------------------------------------


@pytest.fixture
def env(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKE_URI", lake.root)
    monkeypatch.setenv("TIDELAKE_CONSUMER_GROUP", GROUP)
    monkeypatch.delenv("TIDELAKE_TOPIC_PREFIX", raising=False)
    monkeypatch.delenv("TIDELAKE_MAX_MESSAGE_BYTES", raising=False)
    monkeypatch.setitem(TOPICS, BASE.name, FIXED)


def test_the_command_moves_records_and_prints_json(
    kafka: FakeKafka, lake: Lake, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(kafka, lake)

    code = cli.main(["quarantine", "replay", "--topic", BASE.name, "--json"])

    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["moved"] == 24 and out["topics"][0]["recovered"] == 0
    assert out["partitions_touched"]


def test_the_command_reads_the_message_limit_from_the_environment(
    kafka: FakeKafka,
    lake: Lake,
    env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fill(kafka, lake)
    monkeypatch.setenv("TIDELAKE_MAX_MESSAGE_BYTES", str(SMALL_LIMIT))

    code = cli.main(["quarantine", "replay", "--topic", BASE.name, "--reason", "oversized"])

    assert code == 0
    assert "oversized → still oversized: 12" in capsys.readouterr().out


def test_the_command_dry_run_prints_counts_and_changes_nothing(
    kafka: FakeKafka, lake: Lake, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(kafka, lake)
    tables = versions(lake)

    code = cli.main(["quarantine", "replay", "--topic", BASE.name, "--dry-run"])

    assert code == 0 and versions(lake) == tables
    out = capsys.readouterr().out
    assert "shop.searches: would move 24 to bronze, 12 still failing" in out
    assert "malformed_json → still malformed_json: 12" in out


def test_the_command_rejects_an_unknown_topic_listing_the_valid_ones(
    lake: Lake, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["quarantine", "replay", "--topic", "shop.nope"])

    assert code == 2
    err = capsys.readouterr().err
    assert "shop.nope" in err and "shop.searches" in err and "infra.sensor_readings" in err


def test_the_command_rejects_an_unknown_reason_listing_the_valid_ones(
    lake: Lake, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["quarantine", "replay", "--reason", "too_big"])

    assert code == 2
    assert "too_big" in (err := capsys.readouterr().err) and "oversized" in err


def test_the_command_rejects_a_bad_setting(
    lake: Lake, env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIDELAKE_MAX_MESSAGE_BYTES", "lots")

    assert cli.main(["quarantine", "replay"]) == 2
    assert "TIDELAKE_MAX_MESSAGE_BYTES" in capsys.readouterr().err


def test_the_command_exits_1_when_a_topic_fails_and_still_processes_the_others(
    kafka: FakeKafka,
    lake: Lake,
    env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fill(kafka, lake)
    other = TOPICS["shop.clicks"]
    kafka.create_topic(other.name, 1)
    kafka.produce(other.name, b"{oops", key=b"k")
    IngestEngine(
        lake, KAFKA, IngestSettings(quiet_seconds=0.05), consumer_factory=kafka.consumer_factory
    ).ingest_topic(other)
    real_delete = replay_mod.delete_from_quarantine

    def searches_fail(table: DeltaTable, topic: str, source: pa.Table, annotation: Any) -> int:
        if topic == BASE.name:
            raise OSError("storage said no")
        return real_delete(table, topic, source, annotation)

    monkeypatch.setattr(replay_mod, "delete_from_quarantine", searches_fail)

    code = cli.main(["quarantine", "replay", "--topic", f"{other.name},{BASE.name}"])

    assert code == 1
    captured = capsys.readouterr()
    assert "shop.searches failed: OSError: storage said no" in captured.err
    assert "shop.clicks: moved 0 to bronze, 1 still failing" in captured.out


def test_the_command_says_so_when_there_is_no_quarantine(
    lake: Lake, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["quarantine", "replay"]) == 0
    assert "nothing to replay" in capsys.readouterr().out
