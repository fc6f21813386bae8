"""Where each Kafka partition stands, and whether the broker can still serve it.

The resume position of a partition is the bronze table's Delta txn version of
``app_id = "<consumer group>/<topic>/<partition>"`` (:func:`app_id`). Before a batch reads, the
engine checks those positions against the broker (:func:`range_problems`) and the topic's
identity against the one recorded with them (:func:`check_topic_identity`): a position the
broker cannot serve is an explicit error, never a silent skip or a restart from 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from deltalake import DeltaTable

from tidelake.ingest.annotations import latest_annotation
from tidelake.ingest.consumer import OFFSET_INVALID, AdminLike, ConsumerLike
from tidelake.ingest.errors import IngestError, RangeProblem, TopicRecreatedError

log = logging.getLogger(__name__)

NO_TOPIC_ID = {"", "AAAAAAAAAAAAAAAAAAAAAA", "00000000-0000-0000-0000-000000000000"}
"""What brokers without topic ids (Kafka < 2.8) answer."""


def app_id(group: str, physical_topic: str, partition: int) -> str:
    """The Delta transaction app_id that stores the resume offset of one Kafka partition."""
    return f"{group}/{physical_topic}/{partition}"


def hour_partition_key(date: Any, hour: int) -> str:
    """Dagster hourly partition key (``%Y-%m-%d-%H:%M``) of an event_date/event_hour pair."""
    return f"{date.isoformat()}-{int(hour):02d}:00"


def stored_positions(
    table: DeltaTable | None, group: str, topic: str, partitions: list[int]
) -> dict[int, int | None]:
    """Resume offset per partition from the bronze Delta log (None: never ingested)."""
    return {
        p: (table.transaction_version(app_id(group, topic, p)) if table else None)
        for p in partitions
    }


def topic_partitions(consumer: ConsumerLike, topic: str, timeout: float = 10.0) -> list[int]:
    """Partition ids of ``topic`` from broker metadata; raises if the topic does not exist.

    Lists all topics rather than naming one: a metadata request naming a missing topic makes
    some brokers (Tansu, or Kafka with auto-create on) create it with default settings.
    """
    md = consumer.list_topics(timeout=timeout)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        err = getattr(meta, "error", None) if meta is not None else "absent"
        raise IngestError(
            f"Kafka topic {topic!r} is not available ({err}); create it "
            f"(`tidelake dev` does) or check TIDELAKE_TOPIC_PREFIX"
        )
    return sorted(meta.partitions)


def topic_id(admin: AdminLike, topic: str, timeout: float = 10.0) -> str | None:
    """The broker's id of ``topic`` (changes when the topic is re-created), None if it has none.

    Failures (an old broker, no DescribeTopics permission) are logged and give None: the
    position checks below still apply, only re-creation detection by id is lost.
    """
    try:
        from confluent_kafka import TopicCollection

        futures = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)
        described = futures[topic].result(timeout=timeout)
    except Exception as exc:
        log.warning("%s: topic id unavailable (%s); re-creation is detected by offsets", topic, exc)
        return None
    value = getattr(described, "topic_id", None)
    text = str(value) if value is not None else ""
    return None if text in NO_TOPIC_ID else text


def check_topic_identity(bronze: DeltaTable, topic: str, current_id: str | None) -> None:
    """Raise :class:`TopicRecreatedError` when bronze's newest commit of ``topic`` recorded a
    different topic id than the broker reports now."""
    if current_id is None:
        return
    latest = latest_annotation(bronze, topic, kinds=("ingest", "accept_gap"))
    if latest is None or latest.annotation.topic_id is None:
        return
    if latest.annotation.topic_id != current_id:
        raise TopicRecreatedError(topic, latest.annotation.topic_id, current_id, latest.version)


def range_problems(
    consumer: ConsumerLike,
    topic: str,
    positions: Mapping[int, int | None],
    probe_timeout: float = 1.0,
) -> tuple[dict[int, RangeProblem], dict[int, tuple[int, int]]]:
    """Stored positions outside the broker's retained log, and the watermarks of every partition.

    Rules: a position below the low watermark lost records to retention (``expired``). A position
    above the high watermark is suspicious, not proof: some brokers report the base offset of the
    last record batch as the high watermark. So the log end is probed: reading from the last
    offset before the position must get the consumer to the position (a record delivered at or
    past ``position - 1``, or the consumer's own position reaching it past control markers);
    otherwise the position is past the end (``past_end``: the topic was re-created or
    truncated). The consumer's assignment is left undefined; callers assign afterwards.
    """
    from confluent_kafka import TopicPartition

    marks: dict[int, tuple[int, int]] = {}
    problems: dict[int, RangeProblem] = {}
    suspects: dict[int, int] = {}
    for p, pos in positions.items():
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        marks[p] = (int(low), int(high))
        if pos is None:
            continue
        if pos < low:
            problems[p] = RangeProblem(p, pos, int(low), int(high), "expired")
        elif pos > high:
            suspects[p] = pos
    if suspects:
        reached = _probe_end(consumer, topic, suspects, probe_timeout)
        for p, pos in suspects.items():
            if p not in reached:
                low, high = marks[p]
                problems[p] = RangeProblem(p, pos, low, high, "past_end")
    return problems, marks


def _probe_end(
    consumer: ConsumerLike, topic: str, positions: Mapping[int, int], timeout: float
) -> set[int]:
    """Partitions whose log really extends to ``positions[p]`` (see :func:`range_problems`)."""
    from confluent_kafka import TopicPartition

    consumer.assign([TopicPartition(topic, p, pos - 1) for p, pos in positions.items()])
    tps = [TopicPartition(topic, p) for p in positions]
    reached: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(reached) < len(positions) and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=100, timeout=0.1):
            p = m.partition()
            if m.error() is None and p in positions and (m.offset() or 0) >= positions[p] - 1:
                reached.add(p)
        for tp in consumer.position(tps):
            if tp.offset != OFFSET_INVALID and tp.offset >= positions[tp.partition]:
                reached.add(tp.partition)
    return reached
