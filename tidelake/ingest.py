"""Exactly-once ingestion: Kafka topic → ``quarantine`` + ``bronze/<table>`` Delta tables.

The protocol (docs/ARCHITECTURE.md, "Exactly-once ingestion"):

1. The resume position of each (topic, partition) is the bronze table's Delta transaction version
   for ``app_id = "<consumer group>/<topic>/<partition>"``; missing means the earliest offset.
2. Records are read with ``assign()`` + seek from there until every partition is quiet (the
   broker's high watermark is never trusted as the end), or a record/time cap is hit.
3. Each chunk is decoded in bulk; invalid records go to ``quarantine``, valid ones to bronze.
   Quarantine commits first, bronze second; each commit carries
   ``Transaction(app_id, next_offset)`` for every partition in the chunk. Before writing, each
   table's stored version is re-read and rows below it are dropped, because deltalake accepts a
   *lower* version silently. A ``CommitFailedError`` (another writer committed the same app_id
   from our snapshot) leads to a re-read and retry, so nothing is written twice.
4. After the Delta commits the same offsets go to the Kafka consumer group, for lag tooling only.

A crash at any point therefore neither loses nor duplicates a record: a restart re-reads from
bronze's position and each table skips what it already holds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from tidelake.contracts import (
    BRONZE_PARTITION_BY,
    QUARANTINE_PARTITION_BY,
    QUARANTINE_PATH,
    QUARANTINE_SCHEMA,
    TOPICS,
    TopicContract,
)
from tidelake.decode import ChunkDecoder, DecodedChunk, RawChunk
from tidelake.lake import Lake
from tidelake.settings import IngestSettings, KafkaSettings, Settings

log = logging.getLogger(__name__)

OFFSET_BEGINNING = -2
"""librdkafka's logical offset for 'the earliest available record'."""

LATE_THRESHOLD_SECONDS = 30.0
"""A record counts as late when it reached Kafka more than this after its ``event_time``."""

CONSUME_BATCH = 10_000
DECODE_PIECE_ROWS = 50_000
"""Records decoded at a time while the next records are consumed."""
PIECES_IN_FLIGHT = 2
"""How far consuming may run ahead of decoding and committing (bounds memory to ~2 pieces)."""
MAX_COMMIT_ATTEMPTS = 20

FAULT_ENV = "TIDELAKE_FAULT_POINT"
FAULT_POINTS = (
    "after_consume",
    "before_quarantine_commit",
    "between_commits",
    "after_bronze_commit",
    "before_group_commit",
)


class IngestError(RuntimeError):
    """Ingestion cannot proceed (missing topic, broker error); the message says why."""


class MessageLike(Protocol):
    def error(self) -> Any: ...
    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class ConsumerLike(Protocol):
    """The subset of ``confluent_kafka.Consumer`` the engine uses (a fake implements it too)."""

    def assign(self, partitions: list[Any]) -> None: ...
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]: ...
    def commit(self, *args: Any, **kwargs: Any) -> Any: ...
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...
    def get_watermark_offsets(
        self, partition: Any, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...
    def close(self) -> None: ...


ConsumerFactory = Callable[[dict[str, Any]], ConsumerLike]


def kafka_consumer_factory(config: dict[str, Any]) -> ConsumerLike:
    """Build a real ``confluent_kafka.Consumer``."""
    from confluent_kafka import Consumer

    consumer: ConsumerLike = Consumer(config)
    return consumer


def app_id(group: str, physical_topic: str, partition: int) -> str:
    """The Delta transaction app_id that stores the resume offset of one Kafka partition."""
    return f"{group}/{physical_topic}/{partition}"


def hour_partition_key(date: Any, hour: int) -> str:
    """Dagster hourly partition key (``%Y-%m-%d-%H:%M``) of an event_date/event_hour pair."""
    return f"{date.isoformat()}-{int(hour):02d}:00"


@dataclass
class BatchReport:
    """What one ingestion batch of one topic did. Every figure is about this batch only."""

    topic: str
    physical_topic: str
    records: int = 0
    bytes: int = 0
    valid: int = 0
    invalid: int = 0
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_already_committed: int = 0
    late_count: int = 0
    max_lateness_seconds: float | None = None
    duplicate_event_ids: int = 0
    partitions_touched: list[str] = field(default_factory=list)
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Kafka partition → (first offset read, next offset to read) for partitions with records."""
    positions: dict[int, int | None] = field(default_factory=dict)
    """Kafka partition → resume position found in bronze at the start (None: never ingested)."""
    bronze_version: int | None = None
    quarantine_version: int | None = None
    commits: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    group_commit_error: str | None = None

    def add_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["offsets"] = {str(p): list(r) for p, r in self.offsets.items()}
        d["positions"] = {str(p): v for p, v in self.positions.items()}
        return d

    def summary(self) -> str:
        """One readable line for logs and the CLI."""
        secs = sum(self.stage_seconds.values())
        rate = self.records / secs if secs > 0 else 0.0
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.invalid_by_reason.items()))
        lateness = (
            f"{self.max_lateness_seconds:.1f}s" if self.max_lateness_seconds is not None else "-"
        )
        return (
            f"{self.topic}: {self.records} records ({self.bytes / 1e6:.1f} MB), "
            f"{self.valid} valid, {self.invalid} quarantined"
            + (f" [{reasons}]" if reasons else "")
            + f", {self.late_count} late (max lateness {lateness}), "
            f"{self.duplicate_event_ids} duplicate ids, "
            f"{len(self.partitions_touched)} hour partitions, {self.commits} commits, "
            f"bronze v{self.bronze_version}, {rate:,.0f} rec/s"
        )


@dataclass
class PartitionLag:
    """Where one partition stands: bronze's resume position against the broker."""

    partition: int
    position: int | None
    """Next offset bronze will read (None: never ingested, starts at the earliest record)."""
    high_watermark: int
    """As reported by the broker; may under-report the true end (see :meth:`IngestEngine.lag`)."""
    pending_probe: bool
    """A record exists at the position (read by a probe consumer), whatever the watermark says."""
    oldest_pending_ms: int | None
    """Kafka timestamp of the first pending record, if the probe saw one."""

    @property
    def lag(self) -> int:
        """Records known pending: watermark minus position, at least 1 if the probe saw one."""
        by_watermark = max(0, self.high_watermark - (self.position or 0))
        return max(by_watermark, 1 if self.pending_probe else 0)


@dataclass
class TopicLag:
    """Pending data of one topic: what a sensor needs to decide whether a run is due."""

    topic: str
    physical_topic: str
    partitions: list[PartitionLag]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def pending(self) -> bool:
        return self.total_lag > 0

    @property
    def oldest_pending_age_seconds(self) -> float | None:
        stamps = [p.oldest_pending_ms for p in self.partitions if p.oldest_pending_ms]
        return (time.time() * 1000 - min(stamps)) / 1000 if stamps else None

    def cursor_token(self) -> str:
        """``p:position-watermark`` per partition: names what a run would pick up."""
        return ",".join(
            f"{p.partition}:{p.position if p.position is not None else 'start'}-{p.high_watermark}"
            for p in self.partitions
        )


class FaultInjector:
    """Testing hook: ``TIDELAKE_FAULT_POINT=<point>:<n>`` SIGKILLs this process at the n-th hit.

    It lets the crash tests kill the engine exactly before, between and after the two Delta commits
    and before the consumer-group commit. Unset (the default), it does nothing.
    """

    def __init__(self, spec: str | None) -> None:
        self.point: str | None = None
        self.at = 1
        self.hits = 0
        if spec:
            point, _, n = spec.partition(":")
            if point not in FAULT_POINTS:
                raise ValueError(f"{FAULT_ENV}={spec!r}: point must be one of {FAULT_POINTS}")
            self.point, self.at = point, int(n or 1)

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self.hits += 1
        if self.hits >= self.at:
            log.warning("fault injection: SIGKILL at %s (hit %d)", point, self.hits)
            os.kill(os.getpid(), signal.SIGKILL)


class _ChunkBuilder:
    """Accumulates consumed messages column-wise (one pass per attribute, no per-row objects)."""

    def __init__(self) -> None:
        self.partitions: list[int] = []
        self.offsets: list[int] = []
        self.timestamps: list[int] = []
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []

    def __len__(self) -> int:
        return len(self.values)

    def extend(self, msgs: list[MessageLike]) -> None:
        self.values.extend([m.value() for m in msgs])
        self.keys.extend([m.key() for m in msgs])
        self.partitions.extend([m.partition() for m in msgs])  # type: ignore[misc]
        self.offsets.extend([m.offset() for m in msgs])  # type: ignore[misc]
        self.timestamps.extend([m.timestamp()[1] for m in msgs])

    def build(self, topic: str) -> RawChunk:
        return RawChunk(
            topic=topic,
            partitions=np.asarray(self.partitions, dtype=np.int32),
            offsets=np.asarray(self.offsets, dtype=np.int64),
            timestamps_ms=np.asarray(self.timestamps, dtype=np.int64),
            keys=self.keys,
            values=self.values,
        )


@dataclass
class _OpenChunk:
    """Decoded pieces waiting to be committed together, and the next offset per partition."""

    valid: list[pa.Table] = field(default_factory=list)
    invalid: list[pa.Table] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)

    def add(self, decoded: DecodedChunk) -> None:
        self.valid.append(decoded.valid)
        self.invalid.append(decoded.invalid)

    def take(self) -> tuple[DecodedChunk, dict[int, int]]:
        decoded = DecodedChunk(
            valid=pa.concat_tables(self.valid), invalid=pa.concat_tables(self.invalid)
        )
        ends = self.ends
        self.valid, self.invalid, self.ends = [], [], {}
        return decoded, ends


def ensure_table(
    lake: Lake,
    relative: str,
    schema: pa.Schema,
    partition_by: Sequence[str],
    description: str,
) -> DeltaTable:
    """Open a Delta table, creating it (empty, with schema and partitioning) if it is missing.

    Two processes may race to create it; the loser simply opens the winner's table.
    """
    table = lake.open(relative)
    if table is not None:
        return table
    try:
        DeltaTable.create(
            lake.uri(relative),
            schema=schema,
            partition_by=list(partition_by),
            mode="ignore",
            name=relative.replace("/", "_"),
            description=description,
            storage_options=lake.storage_options,
        )
    except DeltaError as exc:  # lost a creation race: the table exists now
        log.info("create %s raced (%s); opening it", relative, exc)
    for _ in range(20):
        table = lake.open(relative)
        if table is not None:
            return table
        time.sleep(0.1)
    raise IngestError(f"could not create or open Delta table {lake.uri(relative)}")


class IngestEngine:
    """Drains Kafka topics of the contract into the lake, exactly once.

    Args:
        lake: where the tables live.
        kafka: broker connection, topic prefix and consumer group.
        ingest: batch caps.
        consumer_factory: builds the consumer (tests pass a fake one).
    """

    def __init__(
        self,
        lake: Lake,
        kafka: KafkaSettings,
        ingest: IngestSettings | None = None,
        consumer_factory: ConsumerFactory | None = None,
    ) -> None:
        self.lake = lake
        self.kafka = kafka
        self.settings = ingest or IngestSettings()
        self.consumer_factory = consumer_factory or kafka_consumer_factory
        self.fault = FaultInjector(os.environ.get(FAULT_ENV))

    @classmethod
    def from_settings(
        cls, settings: Settings, consumer_factory: ConsumerFactory | None = None
    ) -> IngestEngine:
        return cls(
            Lake.from_settings(settings.lake), settings.kafka, settings.ingest, consumer_factory
        )

    # -- positions -----------------------------------------------------------------------------

    def consumer_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = self.kafka.client_config() if self.kafka.bootstrap_servers else {}
        conf.update(
            {
                "group.id": self.kafka.consumer_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                "queued.min.messages": 200_000,
                "fetch.wait.max.ms": 100,
            }
        )
        return conf

    def bronze_table(self, contract: TopicContract) -> DeltaTable:
        return ensure_table(
            self.lake,
            contract.bronze_path,
            contract.bronze_schema(),
            BRONZE_PARTITION_BY,
            contract.description,
        )

    def quarantine_table(self) -> DeltaTable:
        return ensure_table(
            self.lake,
            QUARANTINE_PATH,
            QUARANTINE_SCHEMA,
            QUARANTINE_PARTITION_BY,
            "Records that failed parsing or validation, with raw bytes and the reason.",
        )

    def positions(
        self, contract: TopicContract, partitions: Iterable[int]
    ) -> dict[int, int | None]:
        """Resume offset per partition from the bronze Delta log (None: never ingested)."""
        topic = contract.physical_topic(self.kafka.topic_prefix)
        table = self.lake.open(contract.bronze_path)
        group = self.kafka.consumer_group
        return {
            p: (table.transaction_version(app_id(group, topic, p)) if table else None)
            for p in partitions
        }

    @staticmethod
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

    def lag(self, contract: TopicContract, probe_timeout: float = 1.0) -> TopicLag:
        """Compare bronze's positions with the broker, without trusting the watermark alone.

        Some brokers report the base offset of the last record batch as the high watermark, so a
        partition whose watermark equals the position may still hold records. A probe consumer
        therefore also tries to read one record at each position (up to ``probe_timeout``).
        """
        from confluent_kafka import TopicPartition

        topic = contract.physical_topic(self.kafka.topic_prefix)
        conf = self.consumer_config() | {"group.id": f"{self.kafka.consumer_group}-probe"}
        consumer = self.consumer_factory(conf)
        try:
            parts = self.topic_partitions(consumer, topic)
            positions = self.positions(contract, parts)
            marks = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts
            }
            consumer.assign(
                [
                    TopicPartition(topic, p, pos if pos is not None else OFFSET_BEGINNING)
                    for p, pos in positions.items()
                ]
            )
            first: dict[int, int] = {}
            deadline = time.monotonic() + probe_timeout
            while len(first) < len(parts) and time.monotonic() < deadline:
                for m in consumer.consume(num_messages=500, timeout=0.1):
                    if m.error() is None and m.partition() not in first:
                        first[m.partition()] = m.timestamp()[1]
        finally:
            with contextlib.suppress(Exception):
                consumer.close()
        return TopicLag(
            topic=contract.name,
            physical_topic=topic,
            partitions=[
                PartitionLag(
                    partition=p,
                    position=positions[p],
                    high_watermark=marks[p],
                    pending_probe=p in first,
                    oldest_pending_ms=first.get(p),
                )
                for p in parts
            ],
        )

    # -- one batch -----------------------------------------------------------------------------

    def ingest_topic(
        self, contract: TopicContract, partitions: Sequence[int] | None = None
    ) -> BatchReport:
        """Run one micro-batch for one topic: read until quiet (or a cap), commit, report."""
        from confluent_kafka import TopicPartition

        topic = contract.physical_topic(self.kafka.topic_prefix)
        report = BatchReport(topic=contract.name, physical_topic=topic)
        t0 = time.perf_counter()
        bronze = self.bronze_table(contract)
        quarantine = self.quarantine_table()
        consumer = self.consumer_factory(self.consumer_config())
        decoder = ChunkDecoder(
            contract,
            max_message_bytes=self.settings.max_message_bytes,
            max_future_seconds=self.settings.max_future_seconds,
        )
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ingest-{contract.name}")
        event_ids: list[pa.ChunkedArray] = []
        touched: set[str] = set()
        try:
            parts = (
                list(partitions)
                if partitions is not None
                else self.topic_partitions(consumer, topic)
            )
            group = self.kafka.consumer_group
            report.positions = {
                p: bronze.transaction_version(app_id(group, topic, p)) for p in parts
            }
            targets = self._targets(consumer, topic, report.positions)
            consumer.assign(
                [
                    TopicPartition(topic, p, pos if pos is not None else OFFSET_BEGINNING)
                    for p, pos in report.positions.items()
                ]
            )
            report.add_stage("setup", time.perf_counter() - t0)

            pending: deque[Future[dict[int, int] | None]] = deque()
            open_chunk = _OpenChunk()

            def finish_oldest() -> None:
                ends = pending.popleft().result()
                if ends is not None:
                    self._group_commit(consumer, topic, ends, report)

            # Pieces are decoded in the background (in order, one worker) while the next pieces
            # are consumed; every `commit_rows` records the decoded pieces are committed together.
            for piece, closes in self._read_chunks(consumer, topic, report, targets):
                self.fault.hit("after_consume")
                while len(pending) >= PIECES_IN_FLIGHT:
                    finish_oldest()
                pending.append(
                    pool.submit(
                        self._decode_piece,
                        contract,
                        piece,
                        closes,
                        open_chunk,
                        decoder,
                        bronze,
                        quarantine,
                        report,
                        event_ids,
                        touched,
                    )
                )
            while pending:
                finish_oldest()
        finally:
            pool.shutdown(wait=True)
            decoder.close()
            with contextlib.suppress(Exception):
                consumer.close()
        report.partitions_touched = sorted(touched)
        if event_ids:
            ids = pa.chunked_array([c for arr in event_ids for c in arr.chunks], pa.string())
            report.duplicate_event_ids = len(ids) - pc.count_distinct(ids).as_py()
        report.bronze_version = bronze.version()
        report.quarantine_version = quarantine.version()
        log.info("%s", report.summary())
        return report

    @staticmethod
    def _targets(
        consumer: ConsumerLike, topic: str, positions: Mapping[int, int | None]
    ) -> dict[int, tuple[int, int]]:
        """Per partition, (start offset, offset the batch must reach): what was there at start.

        The broker's high watermark may under-report the end (the base offset of the last record
        batch), so it is only a lower bound; reaching it is not taken as the end of data
        (see :meth:`_read_chunks`).
        """
        from confluent_kafka import TopicPartition

        targets: dict[int, tuple[int, int]] = {}
        for p, pos in positions.items():
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            except Exception as exc:  # no watermark: fall back to reading until quiet
                log.warning("%s[%d]: no high watermark (%s); reading until quiet", topic, p, exc)
                low = high = 0
            begin = pos if pos is not None else max(int(low), 0)
            targets[p] = (begin, max(int(high), begin))
        return targets

    def _read_chunks(
        self,
        consumer: ConsumerLike,
        topic: str,
        report: BatchReport,
        targets: Mapping[int, tuple[int, int]],
    ) -> Iterable[tuple[RawChunk, bool]]:
        """Consume what was pending when the batch started, in pieces of up to 50k records.

        Yields ``(piece, closes)``; ``closes`` marks the last piece of a commit (``commit_rows``
        reached, or the batch is over). An empty closing piece may end the batch.

        A partition is done once it has reached its target offset (the watermark at the start,
        which may under-report the end) and then either stayed quiet for ``quiet_seconds`` or
        delivered a record stamped after the batch started. Such a record was produced after
        the start, so everything that was pending at the start has been read; newer records
        are left for the next batch, which keeps a steady stream from holding a batch open. (A
        producer clock running ahead can end a batch early; that only defers records.) The
        batch ends when every partition is done, or at ``max_batch_records`` /
        ``max_batch_seconds``.
        """
        s = self.settings
        start = time.monotonic()
        last_seen = dict.fromkeys(targets, start)
        next_offset: dict[int, int] = {}
        start_ms = int(time.time() * 1000)
        live: set[int] = set()
        done: set[int] = set()
        total = 0
        since_commit = 0
        piece_rows = min(DECODE_PIECE_ROWS, s.commit_rows)
        builder = _ChunkBuilder()
        while True:
            t = time.perf_counter()
            msgs = consumer.consume(
                num_messages=min(
                    CONSUME_BATCH,
                    s.max_batch_records - total,
                    piece_rows - len(builder),
                    s.commit_rows - since_commit - len(builder),
                ),
                timeout=min(0.2, s.quiet_seconds),
            )
            now = time.monotonic()
            if msgs:
                errors = [m for m in msgs if m.error() is not None]
                if errors:
                    self._raise_fatal(errors, topic)
                    msgs = [m for m in msgs if m.error() is None]
                n_before = len(builder)
                builder.extend(msgs)
                total += len(msgs)
                # Messages of a partition arrive in offset order: the last one per partition wins.
                new_parts = builder.partitions[n_before:]
                latest = dict(zip(new_parts, builder.offsets[n_before:], strict=True))
                stamps = dict(zip(new_parts, builder.timestamps[n_before:], strict=True))
                for p, offset in latest.items():
                    next_offset[p] = offset + 1
                    last_seen[p] = now
                    if stamps[p] >= start_ms:
                        live.add(p)
            report.add_stage("consume", time.perf_counter() - t)
            for p, (begin, target) in targets.items():
                if p in done:
                    continue
                reached = next_offset.get(p, begin)
                if reached >= target and (p in live or now - last_seen[p] >= s.quiet_seconds):
                    done.add(p)
            finished = (
                len(done) == len(targets)
                or total >= s.max_batch_records
                or now - start >= s.max_batch_seconds
            )
            full = since_commit + len(builder) >= s.commit_rows
            if len(builder) >= piece_rows or full or (finished and len(builder)):
                since_commit += len(builder)
                closes = full or finished
                yield builder.build(topic), closes
                builder = _ChunkBuilder()
                if closes:
                    since_commit = 0
            elif finished and since_commit:
                # The last piece was yielded before the batch knew it was finished.
                yield _ChunkBuilder().build(topic), True
            if finished:
                break

    @staticmethod
    def _raise_fatal(errors: list[Any], topic: str) -> None:
        from confluent_kafka import KafkaError

        for m in errors:
            err = m.error()
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            if getattr(err, "fatal", lambda: False)() or err.code() in (
                KafkaError.UNKNOWN_TOPIC_OR_PART,
                KafkaError._UNKNOWN_TOPIC,
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
            ):
                raise IngestError(f"consuming {topic}: {err}")
            log.warning("consumer error on %s (retrying): %s", topic, err)

    def _decode_piece(
        self,
        contract: TopicContract,
        piece: RawChunk,
        closes: bool,
        open_chunk: _OpenChunk,
        decoder: ChunkDecoder,
        bronze: DeltaTable,
        quarantine: DeltaTable,
        report: BatchReport,
        event_ids: list[pa.ChunkedArray],
        touched: set[str],
    ) -> dict[int, int] | None:
        """Decode one piece; on a closing piece commit the open chunk. Returns committed ends."""
        ingested_at = datetime.now(UTC)
        if len(piece):
            t = time.perf_counter()
            decoded = decoder.decode(piece, ingested_at)
            open_chunk.add(decoded)
            report.add_stage("decode", time.perf_counter() - t)
            for p in np.unique(piece.partitions).tolist():
                sel = piece.offsets[piece.partitions == p]
                first, nxt = int(sel.min()), int(sel.max()) + 1
                open_chunk.ends[int(p)] = max(nxt, open_chunk.ends.get(int(p), nxt))
                prev = report.offsets.get(int(p))
                report.offsets[int(p)] = (prev[0] if prev else first, nxt)
            report.records += len(piece)
            report.bytes += decoded.nbytes
        if not closes or not open_chunk.ends:
            return None
        decoded, ends = open_chunk.take()
        valid, invalid = self._commit(contract, decoded, ends, bronze, quarantine, report)
        self._account(valid, invalid, ingested_at, report, event_ids, touched)
        return ends

    def _commit(
        self,
        contract: TopicContract,
        decoded: DecodedChunk,
        ends: Mapping[int, int],
        bronze: DeltaTable,
        quarantine: DeltaTable,
        report: BatchReport,
    ) -> tuple[pa.Table, pa.Table]:
        """The two commits of the protocol, retried on conflicts. Returns what was written."""
        topic = contract.physical_topic(self.kafka.topic_prefix)
        group = self.kafka.consumer_group
        ids = {p: app_id(group, topic, p) for p in ends}
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            try:
                # Quarantine first: drop what it already holds, then commit with its txns.
                t = time.perf_counter()
                invalid, q_txns = _unwritten(quarantine, decoded.invalid, ids, ends)
                self.fault.hit("before_quarantine_commit")
                if invalid.num_rows:
                    write_deltalake(
                        quarantine,
                        invalid,
                        mode="append",
                        commit_properties=CommitProperties(app_transactions=q_txns),
                    )
                    report.commits += 1
                report.add_stage("write_quarantine", time.perf_counter() - t)
                self.fault.hit("between_commits")

                # Bronze second: its txn is the resume position, so it always commits (even
                # with no valid rows) while any partition advances.
                t = time.perf_counter()
                valid, b_txns = _unwritten(bronze, decoded.valid, ids, ends)
                skipped = (decoded.valid.num_rows - valid.num_rows) + (
                    decoded.invalid.num_rows - invalid.num_rows
                )
                if b_txns:
                    write_deltalake(
                        bronze,
                        valid,
                        mode="append",
                        commit_properties=CommitProperties(app_transactions=b_txns),
                    )
                    report.commits += 1
                report.add_stage("write_bronze", time.perf_counter() - t)
                self.fault.hit("after_bronze_commit")
                if skipped:
                    log.warning(
                        "%s: %d records were already committed by another writer; skipped",
                        topic,
                        skipped,
                    )
                report.skipped_already_committed += skipped
                return valid, invalid
            except CommitFailedError as exc:
                log.warning(
                    "%s: concurrent commit (%s); re-reading the log (attempt %d)",
                    topic,
                    exc,
                    attempt,
                )
                time.sleep(min(0.05 * attempt, 1.0))
        raise IngestError(f"{topic}: gave up after {MAX_COMMIT_ATTEMPTS} conflicting commits")

    def _account(
        self,
        valid: pa.Table,
        invalid: pa.Table,
        ingested_at: datetime,
        report: BatchReport,
        event_ids: list[pa.ChunkedArray],
        touched: set[str],
    ) -> None:
        report.valid += valid.num_rows
        report.invalid += invalid.num_rows
        if invalid.num_rows:
            for reason, n in Counter(invalid.column("error").to_pylist()).items():
                report.invalid_by_reason[reason] = report.invalid_by_reason.get(reason, 0) + n
        if not valid.num_rows:
            return
        event_ids.append(valid.column("event_id"))
        et = pc.cast(valid.column("event_time"), pa.int64())
        kt = pc.cast(valid.column("_kafka_timestamp"), pa.int64())
        arrival = pc.fill_null(kt, int(ingested_at.timestamp() * 1e6))
        late = pc.greater(pc.subtract(arrival, et), int(LATE_THRESHOLD_SECONDS * 1e6))
        report.late_count += int(pc.sum(late).as_py() or 0)
        lateness = (int(ingested_at.timestamp() * 1e6) - pc.min(et).as_py()) / 1e6
        if report.max_lateness_seconds is None or lateness > report.max_lateness_seconds:
            report.max_lateness_seconds = lateness
        hours = (
            valid.select(["event_date", "event_hour"])
            .group_by(["event_date", "event_hour"])
            .aggregate([])
        )
        for d, h in zip(
            hours.column("event_date").to_pylist(),
            hours.column("event_hour").to_pylist(),
            strict=True,
        ):
            touched.add(hour_partition_key(d, h))

    def _group_commit(
        self, consumer: ConsumerLike, topic: str, ends: Mapping[int, int], report: BatchReport
    ) -> None:
        """Mirror committed offsets to the consumer group (informational; failures only logged)."""
        from confluent_kafka import TopicPartition

        self.fault.hit("before_group_commit")
        t = time.perf_counter()
        try:
            consumer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in ends.items()],
                asynchronous=False,
            )
        except Exception as exc:  # the Delta log is the truth; lag tools are merely stale
            report.group_commit_error = str(exc)
            log.warning("%s: consumer-group commit failed (Delta is unaffected): %s", topic, exc)
        report.add_stage("group_commit", time.perf_counter() - t)

    def ingest_all(self, contracts: Iterable[TopicContract] | None = None) -> list[BatchReport]:
        """One batch per topic of the registry (or the given contracts), in order."""
        return [self.ingest_topic(c) for c in (contracts or TOPICS.values())]


def _unwritten(
    table: DeltaTable, rows: pa.Table, ids: Mapping[int, str], ends: Mapping[int, int]
) -> tuple[pa.Table, list[Transaction]]:
    """What to append to ``table``: the rows it does not hold yet, and the txns that advance it.

    The table's log is re-read first, because another writer may have committed since our
    snapshot, and deltalake accepts a lower txn version silently: a partition whose stored
    version is already at or past ``ends[p]`` gets no txn, so its position never moves back.
    """
    table.update_incremental()
    done = {p: table.transaction_version(ids[p]) for p in ends}
    txns = [
        Transaction(ids[p], end)
        for p, end in ends.items()
        if (stored := done[p]) is None or end > stored
    ]
    return _unseen(rows, done), txns


def _unseen(table: pa.Table, done: Mapping[int, int | None]) -> pa.Table:
    """Rows whose offset is at or above the stored txn version of their partition.

    This is the rule that makes replays and racing writers safe: a Delta table never takes a
    record below its own stored position for that partition.
    """
    if not table.num_rows or all(v is None for v in done.values()):
        return table
    parts = table.column("_partition").to_numpy()
    offsets = table.column("_offset").to_numpy()
    keep = np.ones(len(parts), dtype=bool)
    for p, v in done.items():
        if v is not None:
            keep &= ~((parts == p) & (offsets < v))
    return table if keep.all() else table.filter(pa.array(keep))


# -- CLI ---------------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tidelake ingest``."""
    p = sub.add_parser(
        "ingest",
        help="drain Kafka topics into bronze/quarantine Delta tables, exactly once",
        description="Reads KAFKA_BOOTSTRAP_SERVERS, LAKE_URI and the TIDELAKE_* settings.",
    )
    p.add_argument("--once", action="store_true", help="drain every topic to caught-up and exit")
    p.add_argument("--topics", help="comma-separated logical topics (default: all)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between loops")
    p.add_argument("--json", action="store_true", help="print reports as JSON lines")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    from tidelake.settings import ConfigError

    try:
        settings = Settings.from_env()
        if not settings.kafka.bootstrap_servers:
            raise ConfigError(
                "KAFKA_BOOTSTRAP_SERVERS is not set: point it at a broker, or run `tidelake dev`"
            )
        contracts = _select_topics(args.topics)
    except (ConfigError, KeyError) as exc:
        sys.stderr.write(f"tidelake ingest: {exc}\n")
        return 2
    engine = IngestEngine.from_settings(settings)
    stop = threading.Event()
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    failed = False
    while True:
        for contract in contracts:
            try:
                report = engine.ingest_topic(contract)
            except IngestError as exc:
                sys.stderr.write(f"tidelake ingest: {exc}\n")
                failed = True
                continue
            sys.stdout.write(
                (json.dumps(report.to_dict()) if args.json else report.summary()) + "\n"
            )
            sys.stdout.flush()
        if args.once or stop.wait(args.interval):
            return 1 if failed else 0


def _select_topics(spec: str | None) -> list[TopicContract]:
    if not spec:
        return list(TOPICS.values())
    names = [t.strip() for t in spec.split(",") if t.strip()]
    unknown = [n for n in names if n not in TOPICS]
    if unknown:
        raise KeyError(f"unknown topic(s) {unknown}; known: {sorted(TOPICS)}")
    return [TOPICS[n] for n in names]


__all__ = [
    "BatchReport",
    "ConsumerLike",
    "IngestEngine",
    "IngestError",
    "app_id",
    "ensure_table",
]
