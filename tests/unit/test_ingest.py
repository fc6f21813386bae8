"""The exactly-once protocol with an in-memory Kafka: resume, replay, races, reports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from confluent_kafka import TopicPartition
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from tidelake.contracts import QUARANTINE_PATH, QUARANTINE_SCHEMA, TOPICS
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import BatchReport, IngestEngine, app_id
from tidelake.ingest.commit import Committer, OpenChunk
from tidelake.ingest.consumer import ChunkBuilder
from tidelake.ingest.decode import ChunkDecoder
from tidelake.ingest.faults import FaultInjector
from tidelake.lake import Lake
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings

TOPIC = TOPICS["shop.searches"]
GROUP = "test-group"


def search(event_time: datetime | None = None, event_id: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id or str(uuid.uuid4()),
            "event_type": "search",
            "event_time": (event_time or datetime.now(UTC)).isoformat(),
            "user_id": "u1",
            "session_id": "s1",
            "query": "red shoes",
            "results_count": 12,
        }
    )


@pytest.fixture
def kafka() -> FakeKafka:
    fake = FakeKafka()
    fake.create_topic(TOPIC.name, partitions=3)
    return fake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))


def engine_for(kafka: FakeKafka, lake: Lake, **caps: Any) -> IngestEngine:
    settings = IngestSettings(quiet_seconds=0.05, **caps)
    return IngestEngine(
        lake, KafkaSettings(consumer_group=GROUP), settings, consumer_factory=kafka.consumer_factory
    )


def bronze_rows(lake: Lake) -> pa.Table:
    return DeltaTable(lake.uri(TOPIC.bronze_path)).to_pyarrow_table()


def quarantine_rows(lake: Lake) -> pa.Table:
    return DeltaTable(lake.uri(QUARANTINE_PATH)).to_pyarrow_table()


def coords(table: pa.Table) -> list[tuple[int, int]]:
    return sorted(zip(table["_partition"].to_pylist(), table["_offset"].to_pylist(), strict=True))


def produce(kafka: FakeKafka, n: int, bad_every: int = 0) -> None:
    for i in range(n):
        value = b"{oops" if bad_every and i % bad_every == 0 else search()
        kafka.produce(TOPIC.name, value, key=f"u{i}".encode())


def test_a_batch_drains_every_partition_and_stores_the_next_offset_in_the_delta_log(
    kafka: FakeKafka, lake: Lake
) -> None:
    produce(kafka, 300, bad_every=10)
    report = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert (report.records, report.valid, report.invalid) == (300, 270, 30)
    assert report.invalid_by_reason == {"malformed_json": 30}
    ends = kafka.end_offsets(TOPIC.name)
    bronze = DeltaTable(lake.uri(TOPIC.bronze_path))
    for p, end in ends.items():
        assert bronze.transaction_version(app_id(GROUP, TOPIC.name, p)) == end
        assert report.offsets[p] == (0, end)
    assert len(coords(bronze_rows(lake))) == 270
    assert len(coords(quarantine_rows(lake))) == 30


def test_the_next_batch_resumes_from_the_delta_txn_and_reads_only_new_records(
    kafka: FakeKafka, lake: Lake
) -> None:
    produce(kafka, 90)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    empty = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert empty.records == 0 and empty.commits == 0
    produce(kafka, 30)
    again = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert again.records == 30
    table = bronze_rows(lake)
    assert table.num_rows == 120 and len(set(coords(table))) == 120


def test_a_batch_of_only_invalid_records_still_advances_the_bronze_position(
    kafka: FakeKafka, lake: Lake
) -> None:
    produce(kafka, 12, bad_every=1)
    report = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert report.valid == 0 and report.invalid == 12
    bronze = DeltaTable(lake.uri(TOPIC.bronze_path))
    assert bronze.to_pyarrow_table().num_rows == 0
    for p, end in kafka.end_offsets(TOPIC.name).items():
        assert bronze.transaction_version(app_id(GROUP, TOPIC.name, p)) == end
    assert engine_for(kafka, lake).ingest_topic(TOPIC).records == 0


def test_small_commit_chunks_split_a_large_backlog_into_several_commits(
    kafka: FakeKafka, lake: Lake
) -> None:
    produce(kafka, 1000)
    report = engine_for(kafka, lake, commit_rows=100).ingest_topic(TOPIC)
    assert report.commits >= 10
    assert bronze_rows(lake).num_rows == 1000


def test_records_another_writer_already_committed_are_skipped_not_duplicated(
    kafka: FakeKafka, lake: Lake
) -> None:
    produce(kafka, 60)
    engine = engine_for(kafka, lake)
    bronze = engine.bronze_table(TOPIC)
    # Another writer got partition 0 up to offset 10 into bronze, and wrote those rows.
    first = engine_for(kafka, lake)
    ahead = {0: 10}
    write_deltalake(
        bronze,
        bronze.schema().to_arrow().empty_table(),  # type: ignore[attr-defined]
        mode="append",
        commit_properties=CommitProperties(
            app_transactions=[Transaction(app_id(GROUP, TOPIC.name, 0), ahead[0])]
        ),
    )
    report = first.ingest_topic(TOPIC)
    assert report.positions[0] == 10
    assert report.records == 60 - 10


def test_a_stale_lower_offset_never_moves_the_stored_position_back(
    kafka: FakeKafka, lake: Lake
) -> None:
    produce(kafka, 30)
    engine = engine_for(kafka, lake)
    engine.ingest_topic(TOPIC)
    before = engine.positions(TOPIC, [0, 1, 2])
    # Replaying an old chunk through the commit path must drop it and keep the positions.
    consumer = kafka.consumer()
    consumer.assign([TopicPartition(TOPIC.name, p, 0) for p in range(3)])
    builder = ChunkBuilder()
    builder.extend(consumer.consume(100))
    chunk = builder.build(TOPIC.name)
    decoder = ChunkDecoder(TOPIC)
    open_chunk = OpenChunk(valid_schema=decoder.schema, invalid_schema=QUARANTINE_SCHEMA)
    open_chunk.add(decoder.decode(chunk, datetime.now(UTC)), chunk.partitions, chunk.offsets, 0)
    open_chunk.starts = dict.fromkeys(range(3), 0)
    open_chunk.ends = dict.fromkeys(range(3), 1)
    committer = Committer(
        bronze=engine.bronze_table(TOPIC),
        quarantine=engine.quarantine_table(),
        topic=TOPIC.name,
        group=GROUP,
        ids={p: app_id(GROUP, TOPIC.name, p) for p in range(3)},
        topic_id=None,
        faults=engine.faults,
    )
    committed = committer.commit(open_chunk.take(), BatchReport(TOPIC.name, TOPIC.name))
    assert committed.valid.num_rows == 0
    assert engine.positions(TOPIC, [0, 1, 2]) == before
    assert bronze_rows(lake).num_rows == 30


def test_a_late_event_lands_in_the_hour_partition_of_its_event_time_and_is_reported(
    kafka: FakeKafka, lake: Lake
) -> None:
    # Regression: replace(minute=5) could move the time forward and make it < 3 h late.
    late_time = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    kafka.produce(TOPIC.name, search(event_time=late_time), key=b"u")
    kafka.produce(TOPIC.name, search(), key=b"u")
    report = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert report.late_count == 1
    assert report.max_lateness_seconds is not None and report.max_lateness_seconds > 3 * 3600
    late_key = f"{late_time:%Y-%m-%d-%H}:00"
    assert late_key in report.partitions_touched
    rows = DeltaTable(lake.uri(TOPIC.bronze_path)).to_pyarrow_table(
        filters=[("event_hour", "=", late_time.hour)]
    )
    assert late_time in rows.column("event_time").to_pylist()


def test_producer_duplicates_are_kept_in_bronze_and_counted(kafka: FakeKafka, lake: Lake) -> None:
    same = str(uuid.uuid4())
    for _ in range(3):
        kafka.produce(TOPIC.name, search(event_id=same), key=b"u")
    report = engine_for(kafka, lake).ingest_topic(TOPIC)
    assert report.valid == 3 and report.duplicate_event_ids == 2


def test_committed_offsets_are_mirrored_to_the_consumer_group(kafka: FakeKafka, lake: Lake) -> None:
    produce(kafka, 50)
    engine_for(kafka, lake).ingest_topic(TOPIC)
    for p, end in kafka.end_offsets(TOPIC.name).items():
        assert kafka.committed[(GROUP, TOPIC.name, p)] == end


def test_lag_sees_pending_records_even_when_the_watermark_under_reports(lake: Lake) -> None:
    kafka = FakeKafka(watermark_lag=5)
    kafka.create_topic(TOPIC.name, partitions=1)
    produce(kafka, 5)
    lag = engine_for(kafka, lake).lag(TOPIC, probe_timeout=0.2)
    assert lag.partitions[0].high_watermark == 0
    assert lag.pending and lag.partitions[0].pending_probe
    engine_for(kafka, lake).ingest_topic(TOPIC)
    assert not engine_for(kafka, lake).lag(TOPIC, probe_timeout=0.2).pending


def test_a_missing_topic_is_a_clear_error(lake: Lake) -> None:
    from tidelake.ingest import IngestError

    with pytest.raises(IngestError, match="not available"):
        engine_for(FakeKafka(), lake).ingest_topic(TOPIC)


def test_fault_injector_rejects_an_unknown_point() -> None:
    with pytest.raises(ValueError, match="point must be one of"):
        FaultInjector("somewhere:1")


def test_a_steady_stream_does_not_keep_a_batch_open_until_its_time_cap(
    kafka: FakeKafka, lake: Lake
) -> None:
    # Regression: batches used to end only after `quiet_seconds` without any record, so under
    # steady traffic every batch ran to `max_batch_seconds` (60 s) and freshness suffered.
    import threading
    import time

    produce(kafka, 100)
    stop = threading.Event()

    def keep_producing() -> None:
        while not stop.is_set():
            kafka.produce(TOPIC.name, search(), key=b"u1")
            time.sleep(0.005)

    producer = threading.Thread(target=keep_producing)
    producer.start()
    try:
        started = time.monotonic()
        report = engine_for(kafka, lake, max_batch_seconds=30.0).ingest_topic(TOPIC)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        producer.join()
    assert report.records >= 100
    assert elapsed < 15, f"the batch stayed open {elapsed:.1f} s under steady traffic"


def test_a_partition_whose_early_records_expired_is_not_waited_for(lake: Lake) -> None:
    kafka = FakeKafka()
    kafka.create_topic(TOPIC.name, partitions=1)
    produce(kafka, 3)
    consumer_factory = kafka.consumer_factory

    class Expired:
        """Imitates retention: the log starts at 3 and holds nothing more."""

        def __init__(self, config: dict[str, Any]) -> None:
            self.inner = consumer_factory(config)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def get_watermark_offsets(self, *args: Any, **kwargs: Any) -> tuple[int, int]:
            return 3, 3

        def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
            return []

    engine = IngestEngine(
        lake,
        KafkaSettings(consumer_group=GROUP),
        IngestSettings(quiet_seconds=0.05, max_batch_seconds=20),
        consumer_factory=Expired,
    )
    import time

    started = time.monotonic()
    assert engine.ingest_topic(TOPIC).records == 0
    assert time.monotonic() - started < 10


def test_the_rest_of_an_under_reported_last_record_batch_lands_in_the_same_batch(
    lake: Lake,
) -> None:
    # Regression: a partition counted as done as soon as it passed the start-time watermark, so
    # when the broker reported the base offset of the last record batch and records came in small
    # slices, the rest of that batch waited for the next run (`ingest --once` did not drain).
    kafka = FakeKafka(watermark_lag=10)
    kafka.create_topic(TOPIC.name, partitions=1)
    produce(kafka, 30)
    report = engine_for(kafka, lake, commit_rows=4).ingest_topic(TOPIC)
    assert report.records == 30


def test_read_annotations_numbers_commits_right_when_newer_ones_landed_after_loading(
    tmp_path: Path,
) -> None:
    # deltalake 1.6's history() starts at the newest commit in storage but labels entries from
    # the loaded version: with other writers (quarantine takes every topic's commits), a reader
    # holding an older snapshot saw the wrong commits under the wrong versions.
    import pyarrow as pa
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    from tidelake.ingest.annotations import CommitAnnotation, read_annotations

    uri = str(tmp_path / "t")

    def commit(i: int) -> None:
        note = CommitAnnotation(kind="ingest", topic=f"t{i}", stats={"i": i})
        write_deltalake(
            uri,
            pa.table({"x": [i]}),
            mode="append",
            commit_properties=CommitProperties(custom_metadata=note.custom_metadata()),
        )

    for i in range(4):
        commit(i)
    loaded = DeltaTable(uri)  # version 3
    for i in range(4, 7):
        commit(i)
    got = [(c.version, c.annotation.stats["i"]) for c in read_annotations(loaded, 1)]
    assert got == [(2, 2), (3, 3)]
    assert [c.version for c in read_annotations(loaded)] == [0, 1, 2, 3]
    assert [c.version for c in read_annotations(loaded, 1, topic="t3")] == [3]
