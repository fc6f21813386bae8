"""The ingestion worker's loop (tidelake.ingest.follow) with an in-memory Kafka."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tidelake.contracts import TOPICS, TopicContract
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import BatchReport, IngestEngine
from tidelake.ingest.follow import Follower, backoff_seconds
from tidelake.lake import Lake
from tidelake.quality.outcome import CheckOutcome
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings

CLICKS, SEARCHES = TOPICS["shop.clicks"], TOPICS["shop.searches"]


def click() -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "click",
            "event_time": datetime.now(UTC).isoformat(),
            "user_id": "u",
            "session_id": "s",
            "product_id": "p",
            "element": "e",
        }
    )


def search() -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "search",
            "event_time": datetime.now(UTC).isoformat(),
            "user_id": "u",
            "session_id": "s",
            "query": "q",
            "results_count": 1,
        }
    )


@pytest.fixture
def kafka() -> FakeKafka:
    fake = FakeKafka()
    for c in (CLICKS, SEARCHES):
        fake.create_topic(c.name, partitions=2)
    return fake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[str, BatchReport, Mapping[str, CheckOutcome]]] = []
        self.alerts: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def batch(self, c: TopicContract, r: BatchReport, o: Mapping[str, CheckOutcome]) -> None:
        with self.lock:
            self.batches.append((c.name, r, o))

    def alert(self, payload: dict[str, Any]) -> None:
        with self.lock:
            self.alerts.append(payload)

    def records(self, topic: str) -> int:
        with self.lock:
            return sum(r.records for t, r, _ in self.batches if t == topic)


def follower(kafka: FakeKafka, lake: Lake, rec: Recorder, **kw: Any) -> Follower:
    def engine() -> IngestEngine:
        return IngestEngine(
            lake,
            KafkaSettings(consumer_group="g"),
            IngestSettings(quiet_seconds=0.05),
            consumer_factory=kafka.consumer_factory,
            admin_factory=kafka.admin_factory,
        )

    return Follower(
        engine,
        [CLICKS, SEARCHES],
        rec.batch,
        rec.alert,
        poll_seconds=0.02,
        heartbeat_seconds=kw.pop("heartbeat_seconds", 5.0),
        **kw,
    )


def running(f: Follower) -> threading.Thread:
    t = threading.Thread(target=f.run)
    t.start()
    return t


def eventually(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_the_worker_drains_every_topic_and_keeps_following_new_records(
    kafka: FakeKafka, lake: Lake
) -> None:
    rec = Recorder()
    for _ in range(30):
        kafka.produce(CLICKS.name, click(), key=b"u")
        kafka.produce(SEARCHES.name, search(), key=b"u")
    f = follower(kafka, lake, rec)
    t = running(f)
    try:
        eventually(lambda: rec.records(CLICKS.name) == 30 and rec.records(SEARCHES.name) == 30)
        for _ in range(12):
            kafka.produce(CLICKS.name, click(), key=b"u")
        eventually(lambda: rec.records(CLICKS.name) == 42)
    finally:
        f.stop()
        t.join(10)
    assert not t.is_alive()
    # Every reported batch carries the per-batch checks, all passed.
    outcomes = [o for _, r, o in rec.batches if r.records]
    assert outcomes and all(
        set(o) == {"unique_kafka_coordinates", "contiguous_offsets", "contract_schema"}
        for o in outcomes
    )
    assert all(x.passed for o in outcomes for x in o.values())


def test_an_idle_topic_waits_on_watermarks_instead_of_running_batches(
    kafka: FakeKafka, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = IngestEngine.ingest_topic

    def counting(self: IngestEngine, contract: TopicContract, *a: Any, **k: Any) -> BatchReport:
        calls["n"] += 1
        return real(self, contract, *a, **k)

    monkeypatch.setattr(IngestEngine, "ingest_topic", counting)
    rec = Recorder()
    kafka.produce(CLICKS.name, click(), key=b"u")
    f = follower(kafka, lake, rec, heartbeat_seconds=30.0)
    t = running(f)
    try:
        eventually(lambda: rec.records(CLICKS.name) == 1)
        settled = calls["n"]
        time.sleep(1.0)
        idle_batches = calls["n"] - settled
    finally:
        f.stop()
        t.join(10)
    # Without the watermark wait, two topics with a 0.05 s quiet time run ~20 batches a second.
    assert idle_batches <= 2, f"{idle_batches} batches in an idle second"


def test_a_failing_topic_backs_off_alerts_once_per_streak_and_once_on_recovery(
    kafka: FakeKafka, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = {"on": True}
    real = IngestEngine.ingest_topic

    def flaky(self: IngestEngine, contract: TopicContract, *a: Any, **k: Any) -> BatchReport:
        if contract is CLICKS and broken["on"]:
            raise OSError("Generic S3 error: 503")
        return real(self, contract, *a, **k)

    monkeypatch.setattr(IngestEngine, "ingest_topic", flaky)
    rec = Recorder()
    kafka.produce(CLICKS.name, click(), key=b"u")
    kafka.produce(SEARCHES.name, search(), key=b"u")
    f = follower(kafka, lake, rec, backoff_base=0.05, backoff_cap=0.1)
    t = running(f)
    try:
        # The topics run on their own threads: wait for both, not for the failing one alone.
        eventually(lambda: f.health[CLICKS.name].streak >= 4)
        eventually(lambda: rec.records(SEARCHES.name) == 1)  # the other topic keeps flowing
        assert f.health[CLICKS.name].streak >= 4 and broken["on"]
        assert [a["event"] for a in rec.alerts] == ["failed"]
        assert rec.alerts[0]["topic"] == CLICKS.name and "503" in rec.alerts[0]["error"]
        broken["on"] = False
        eventually(lambda: rec.records(CLICKS.name) == 1)
        eventually(lambda: len(rec.alerts) == 2)
    finally:
        f.stop()
        t.join(10)
    assert rec.alerts[1]["event"] == "recovered"
    assert rec.alerts[1]["streak"] >= 4
    assert f.health[CLICKS.name].streak == 0


def test_a_batch_whose_checks_fail_counts_as_a_failure(
    kafka: FakeKafka, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tidelake.ingest.follow as follow

    def failing(*_: Any) -> dict[str, CheckOutcome]:
        return {"contiguous_offsets": CheckOutcome(False, "1 gaps (3 offsets missing)")}

    monkeypatch.setattr(follow, "check_batch", failing)
    rec = Recorder()
    kafka.produce(CLICKS.name, click(), key=b"u")
    f = follower(kafka, lake, rec, backoff_base=5.0)
    t = running(f)
    try:
        eventually(lambda: bool(rec.alerts))
    finally:
        f.stop()
        t.join(10)
    assert "blocking check(s) failed: contiguous_offsets: 1 gaps" in rec.alerts[0]["error"]
    assert rec.records(CLICKS.name) == 1, "the batch is durable and still reported"


def test_stop_lets_the_batch_in_progress_finish(kafka: FakeKafka, lake: Lake) -> None:
    rec = Recorder()
    for _ in range(200):
        kafka.produce(CLICKS.name, click(), key=b"u")
    f = follower(kafka, lake, rec)
    t = running(f)
    eventually(lambda: rec.records(CLICKS.name) > 0)
    f.stop()
    t.join(10)
    assert not t.is_alive()
    assert rec.records(CLICKS.name) == 200


def test_backoff_doubles_to_its_cap() -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3, 5, 10)] == [15.0, 30.0, 60.0, 240.0, 300.0]


def test_the_recorder_creates_a_dagster_home_that_does_not_exist_yet(tmp_path: Path) -> None:
    from pipeline_defs.worker import DagsterBatchRecorder

    assert DagsterBatchRecorder.from_env({}) is None, "no DAGSTER_HOME: nothing is recorded"
    home = tmp_path / "not" / "yet"
    recorder = DagsterBatchRecorder.from_env({"DAGSTER_HOME": str(home)})
    assert recorder is not None
    try:
        assert (home / "dagster.yaml").is_file()
        assert Path(recorder.instance.root_directory) == home.resolve()
    finally:
        recorder.close()
