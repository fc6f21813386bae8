"""Offsets that are not records, against the real embedded broker: transactional producers
(commit markers, aborted transactions) and a topic deleted and re-created under ingestion."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from confluent_kafka import Producer, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic
from deltalake import DeltaTable

from tidelake.contracts import QUARANTINE_PATH, TOPICS
from tidelake.ingest import IngestEngine, app_id
from tidelake.ingest.errors import TopicRecreatedError
from tidelake.lake import Lake
from tidelake.quality.bronze import check_offsets_contiguous
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings

pytestmark = pytest.mark.integration

CLICKS = TOPICS["shop.clicks"]


def click(n: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "click",
            "event_time": datetime.now(UTC).isoformat(),
            "user_id": f"u{n}",
            "session_id": "s1",
            "product_id": "p1",
            "element": "buy",
        }
    )


def engine(kafka: KafkaSettings, lake: LakeSettings, **caps: float) -> IngestEngine:
    settings = IngestSettings(**({"quiet_seconds": 0.5, "max_batch_seconds": 60.0} | caps))
    return IngestEngine(Lake.from_settings(lake), kafka, settings)


def test_transactional_topics_land_committed_records_only_and_batches_end_promptly(
    kafka_settings: KafkaSettings, local_lake_settings: LakeSettings
) -> None:
    topic = CLICKS.physical_topic(kafka_settings.topic_prefix)
    producer = Producer(
        kafka_settings.client_config() | {"transactional.id": f"tx-{uuid.uuid4().hex[:8]}"}
    )
    producer.init_transactions(30)
    n = 0
    for txn in range(5):
        producer.begin_transaction()
        for _ in range(10):
            producer.produce(topic, click(n), key=b"u1", partition=0)
            n += 1
        if txn == 3:
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
    started = time.monotonic()
    report = engine(kafka_settings, local_lake_settings).ingest_topic(CLICKS)
    elapsed = time.monotonic() - started
    assert report.records == 40, "exactly the committed transactions' records"
    # Regression: the batch used to wait for offsets that never arrive (markers) until its
    # 60 s cap; the consumer's position passes them.
    assert elapsed < 30, f"the batch took {elapsed:.0f} s"
    lake = Lake.from_settings(local_lake_settings)
    bronze = DeltaTable(lake.uri(CLICKS.bronze_path))
    end = bronze.transaction_version(app_id(kafka_settings.consumer_group, topic, 0))
    assert end is not None and end >= 44, "the position passes the markers and aborted records"
    assert report.skipped_offsets == end - 40
    assert report.skipped_offsets >= 4
    outcome = check_offsets_contiguous(lake, CLICKS, kafka_settings)
    assert outcome.passed, outcome.description
    assert not engine(kafka_settings, local_lake_settings).lag(CLICKS).pending
    again = engine(kafka_settings, local_lake_settings).ingest_topic(CLICKS)
    assert again.records == 0


def test_a_topic_deleted_and_recreated_under_ingestion_is_an_explicit_error(
    kafka_settings: KafkaSettings, local_lake_settings: LakeSettings
) -> None:
    topic = CLICKS.physical_topic(kafka_settings.topic_prefix)
    producer = Producer(kafka_settings.client_config())
    for i in range(20):
        producer.produce(topic, click(i), key=b"u1", partition=0)
    assert producer.flush(10) == 0
    first = engine(kafka_settings, local_lake_settings).ingest_topic(CLICKS)
    assert first.records == 20 and first.topic_id

    admin = AdminClient(kafka_settings.client_config())
    admin.delete_topics([topic], operation_timeout=10)[topic].result(timeout=30)
    for _ in range(50):
        if topic not in admin.list_topics(timeout=5).topics:
            break
        time.sleep(0.1)
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
    new_id = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=10).topic_id
    assert str(new_id) != first.topic_id
    for i in range(30):  # the new log grows past the old position: offsets alone would not tell
        producer.produce(topic, click(i), key=b"u1", partition=0)
    assert producer.flush(10) == 0

    with pytest.raises(TopicRecreatedError, match="deleted and re-created"):
        engine(kafka_settings, local_lake_settings).ingest_topic(CLICKS)
    lake = Lake.from_settings(local_lake_settings)
    bronze = DeltaTable(lake.uri(CLICKS.bronze_path))
    assert bronze.to_pyarrow_table().num_rows == 20, "no record of the new topic moved"
    quarantine = DeltaTable(lake.uri(QUARANTINE_PATH)).to_pyarrow_table()
    assert quarantine.num_rows == 0
