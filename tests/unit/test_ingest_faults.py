"""Exactly once under faults that happen once, as real faults do.

Every test makes one step of one batch fail once (a hook at a named point, a Delta write that
raises before or after its commit lands, a conflicting writer), then checks two things: right
after the failure no stored position is ahead of what is durably in bronze or quarantine, and
after a clean re-run every offset is in exactly one of the two tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError

import tidelake.ingest.commit as commit_module
from tidelake.contracts import QUARANTINE_PATH, TOPICS
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import BatchReport, IngestEngine, app_id
from tidelake.ingest.faults import HOOK_POINTS
from tidelake.lake import Lake
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings

TOPIC = TOPICS["shop.searches"]
GROUP = "fault-group"


class Boom(Exception):
    """The injected failure (not an OSError, so the engine does not retry it)."""


class FailOnce:
    """A fault hook that raises at the ``nth`` hit of ``point``, once; every other hit passes."""

    def __init__(self, point: str, nth: int = 1) -> None:
        self.point, self.nth, self.hits, self.fired = point, nth, 0, False

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self.hits += 1
        if self.hits == self.nth:
            self.fired = True
            raise Boom(f"{point} #{self.nth}")


def search(i: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "search",
            "event_time": datetime.now(UTC).isoformat(),
            "user_id": f"u{i}",
            "session_id": "s1",
            "query": "red shoes",
            "results_count": i,
        }
    )


@pytest.fixture
def kafka() -> FakeKafka:
    fake = FakeKafka()
    fake.create_topic(TOPIC.name, partitions=1)
    return fake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))


def produce(kafka: FakeKafka, n: int, bad_every: int = 7) -> None:
    for i in range(n):
        value = b"{torn" if bad_every and i % bad_every == 3 else search(i)
        kafka.produce(TOPIC.name, value, key=b"k", partition=0)


def engine_for(kafka: FakeKafka, lake: Lake, **caps: Any) -> IngestEngine:
    settings = IngestSettings(**({"quiet_seconds": 0.05, "commit_rows": 100} | caps))
    return IngestEngine(
        lake,
        KafkaSettings(consumer_group=GROUP),
        settings,
        consumer_factory=kafka.consumer_factory,
        admin_factory=kafka.admin_factory,
    )


def offsets_in(lake: Lake, relative: str) -> list[int]:
    table = lake.open(relative)
    if table is None:
        return []
    return table.to_pyarrow_table(columns=["_offset"])["_offset"].to_pylist()


def position(lake: Lake) -> int:
    table = lake.open(TOPIC.bronze_path)
    assert table is not None
    return table.transaction_version(app_id(GROUP, TOPIC.name, 0)) or 0


def assert_position_never_ahead_of_the_data(lake: Lake) -> None:
    """The invariant: every offset below the stored position is durably in one of the tables."""
    held = set(offsets_in(lake, TOPIC.bronze_path)) | set(offsets_in(lake, QUARANTINE_PATH))
    missing = sorted(set(range(position(lake))) - held)
    assert not missing, f"position {position(lake)} is past offsets never written: {missing[:10]}"


def assert_exactly_once(lake: Lake, total: int) -> None:
    seen = offsets_in(lake, TOPIC.bronze_path) + offsets_in(lake, QUARANTINE_PATH)
    assert len(seen) == len(set(seen)), "an offset was written twice"
    assert sorted(seen) == list(range(total)), f"{total - len(set(seen))} offsets lost"
    assert position(lake) == total


@pytest.mark.parametrize("nth", [1, 2, 3])
@pytest.mark.parametrize("point", HOOK_POINTS)
def test_a_step_that_fails_once_stops_the_batch_and_a_clean_rerun_lands_every_offset_once(
    kafka: FakeKafka, lake: Lake, point: str, nth: int
) -> None:
    produce(kafka, 250)  # commit_rows=100: three pieces, three commits
    engine = engine_for(kafka, lake)
    hook = FailOnce(point, nth)
    engine.faults = hook
    with pytest.raises(Boom):
        engine.ingest_topic(TOPIC)
    assert hook.fired
    assert_position_never_ahead_of_the_data(lake)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    assert_exactly_once(lake, 250)


def test_a_bronze_write_that_fails_once_loses_nothing_queued_behind_it(
    kafka: FakeKafka, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (the loss this engine used to have): with commit_rows=100 and 250 records on
    # one partition, a bronze write raising once failed the run, but the piece queued behind it
    # still committed and its txn moved the position past 100 records that were never written.
    produce(kafka, 250, bad_every=0)
    real = commit_module.write_deltalake
    calls = {"bronze": 0}

    def flaky(table: DeltaTable, data: pa.Table, **kwargs: Any) -> None:
        if "bronze" in str(table.table_uri):
            calls["bronze"] += 1
            if calls["bronze"] == 2:
                raise OSError("Generic S3 error: 503 Slow Down")
        real(table, data, **kwargs)

    monkeypatch.setattr(commit_module, "write_deltalake", flaky)
    with pytest.raises(OSError, match="503"):
        engine_for(kafka, lake, write_attempts=1).ingest_topic(TOPIC)
    assert_position_never_ahead_of_the_data(lake)
    monkeypatch.setattr(commit_module, "write_deltalake", real)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    assert len(offsets_in(lake, TOPIC.bronze_path)) == 250
    assert_exactly_once(lake, 250)


def flaky_writes(
    table_name: str, nth: int, landed: bool, error: Callable[[], Exception]
) -> Callable[..., None]:
    """A ``write_deltalake`` that fails the ``nth`` write of one table once.

    ``landed``: the commit is made before the error is raised, as when the storage answer to a
    commit that succeeded is lost (a timeout after the PUT landed).
    """
    real = commit_module.write_deltalake
    seen = {"n": 0}

    def write(table: DeltaTable, data: pa.Table, **kwargs: Any) -> None:
        is_target = table_name in str(table.table_uri)
        if is_target:
            seen["n"] += 1
        if is_target and seen["n"] == nth:
            if landed:
                real(table, data, **kwargs)
            raise error()
        real(table, data, **kwargs)

    return write


def transient() -> Exception:
    return OSError("Generic S3 error: connection reset by peer")


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[..., None]], None]]:
    def apply(fn: Callable[..., None]) -> None:
        monkeypatch.setattr(commit_module, "write_deltalake", fn)

    yield apply


@pytest.mark.parametrize("landed", [False, True], ids=["before-commit", "after-commit"])
@pytest.mark.parametrize("table", ["quarantine", "bronze"])
@pytest.mark.parametrize("nth", [1, 2, 3])
def test_a_storage_error_once_without_retries_fails_the_run_and_the_rerun_completes(
    kafka: FakeKafka,
    lake: Lake,
    patched: Callable[[Callable[..., None]], None],
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    nth: int,
    landed: bool,
) -> None:
    produce(kafka, 250)
    real = commit_module.write_deltalake
    patched(flaky_writes(table, nth, landed, transient))
    with pytest.raises(OSError):
        engine_for(kafka, lake, write_attempts=1).ingest_topic(TOPIC)
    assert_position_never_ahead_of_the_data(lake)
    monkeypatch.setattr(commit_module, "write_deltalake", real)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    assert_exactly_once(lake, 250)


@pytest.mark.parametrize("landed", [False, True], ids=["before-commit", "after-commit"])
@pytest.mark.parametrize("table", ["quarantine", "bronze"])
def test_a_storage_error_once_is_retried_and_the_report_counts_only_what_this_run_wrote(
    kafka: FakeKafka,
    lake: Lake,
    patched: Callable[[Callable[..., None]], None],
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    landed: bool,
) -> None:
    monkeypatch.setattr(commit_module, "WRITE_BACKOFF_SECONDS", 0.01)
    produce(kafka, 250)
    patched(flaky_writes(table, 2, landed, transient))
    report = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert report.write_retries == 1
    assert_exactly_once(lake, 250)
    # True figures after the retry: nothing was "another writer's", whether or not it landed.
    assert report.valid + report.invalid == 250
    assert report.skipped_already_committed == 0
    assert report.invalid == len(offsets_in(lake, QUARANTINE_PATH))


def test_a_conflicting_writer_is_retried_and_its_records_are_reported_as_theirs(
    kafka: FakeKafka, lake: Lake, patched: Callable[[Callable[..., None]], None]
) -> None:
    produce(kafka, 250, bad_every=0)
    real = commit_module.write_deltalake
    state = {"done": False}

    def racing(table: DeltaTable, data: pa.Table, **kwargs: Any) -> None:
        if "bronze" in str(table.table_uri) and not state["done"]:
            # Another writer commits this partition up to offset 40 from the same snapshot
            # first (an empty commit: it wrote its rows elsewhere for this test's purpose).
            state["done"] = True
            other = DeltaTable(table.table_uri)
            real(
                other,
                data.slice(0, 0),
                mode="append",
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(app_id(GROUP, TOPIC.name, 0), 40)]
                ),
            )
            raise CommitFailedError("Transaction failed: concurrent transaction")
        real(table, data, **kwargs)

    patched(racing)
    report = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert report.commit_conflicts == 1
    assert report.skipped_already_committed == 40
    assert report.valid == 210
    assert sorted(offsets_in(lake, TOPIC.bronze_path)) == list(range(40, 250))
    assert position(lake) == 250


def test_a_decode_failure_once_commits_nothing_after_it(kafka: FakeKafka, lake: Lake) -> None:
    produce(kafka, 250)
    engine = engine_for(kafka, lake)
    engine.faults = FailOnce("decode", 2)
    with pytest.raises(Boom):
        engine.ingest_topic(TOPIC)
    # The first chunk (100 records) committed; nothing of the pieces behind the failure did.
    assert position(lake) == 100
    report = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert report.records == 150
    assert_exactly_once(lake, 250)


def test_one_failing_topic_does_not_stop_the_cli_from_draining_the_others(
    kafka: FakeKafka, lake: Lake, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # One topic failing (here: its Delta writes) must not stop `ingest --once` from draining
    # the others, and the exit status says a topic failed.
    from tidelake.cli import ingest as ingest_cli

    other = TOPICS["shop.clicks"]
    kafka.create_topic(other.name, partitions=1)
    produce(kafka, 20)
    kafka.produce(other.name, b"{}", key=b"k")
    engines = engine_for(kafka, lake)
    real = commit_module.write_deltalake

    def broken_for_searches(table: DeltaTable, data: pa.Table, **kwargs: Any) -> None:
        if TOPIC.table_name in str(table.table_uri):
            raise RuntimeError("disk on fire")
        real(table, data, **kwargs)

    monkeypatch.setattr(commit_module, "write_deltalake", broken_for_searches)
    ok = [ingest_cli._one_batch(engines, c, as_json=False) for c in (TOPIC, other)]
    assert ok == [False, True]
    err = capsys.readouterr().err
    assert "shop.searches failed: RuntimeError: disk on fire" in err
    quarantine = DeltaTable(lake.uri(QUARANTINE_PATH)).to_pyarrow_table()
    clicks = quarantine.filter(pa.compute.equal(quarantine["_topic"], other.name))
    assert clicks["_offset"].to_pylist() == [0]


def test_reports_to_dict_is_json_serialisable(kafka: FakeKafka, lake: Lake) -> None:
    produce(kafka, 10)
    report: BatchReport = engine_for(kafka, lake).ingest_topic(TOPIC)
    orjson.dumps(report.to_dict())


def test_a_storage_outage_that_also_fails_the_re_read_is_retried(
    kafka: FakeKafka, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outages rarely spare reads: the re-read of the log before a write attempt is retried
    # like the write itself.
    monkeypatch.setattr(commit_module, "WRITE_BACKOFF_SECONDS", 0.01)
    produce(kafka, 250)
    real = commit_module.unwritten
    calls = {"n": 0}

    def flaky_reread(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("Generic S3 error: 503 Slow Down")
        return real(*args, **kwargs)

    monkeypatch.setattr(commit_module, "unwritten", flaky_reread)
    report = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert report.write_retries == 1
    assert_exactly_once(lake, 250)


def test_a_generic_delta_error_of_a_data_file_upload_is_retried_but_a_schema_error_is_not(
    kafka: FakeKafka,
    lake: Lake,
    patched: Callable[[Callable[..., None]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltalake.exceptions import DeltaError, SchemaMismatchError

    monkeypatch.setattr(commit_module, "WRITE_BACKOFF_SECONDS", 0.01)
    produce(kafka, 250)
    patched(flaky_writes("bronze", 1, False, lambda: DeltaError("Failed to parse parquet")))
    assert engine_for(kafka, lake).ingest_topic(TOPIC).write_retries == 1
    produce(kafka, 10)
    patched(flaky_writes("bronze", 1, False, lambda: SchemaMismatchError("no such column")))
    with pytest.raises(SchemaMismatchError):
        engine_for(kafka, lake).ingest_topic(TOPIC)
    assert_position_never_ahead_of_the_data(lake)
