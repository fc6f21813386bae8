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

import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from tidelake.contracts import (
    BRONZE_PARTITION_BY,
    QUARANTINE_PARTITION_BY,
    QUARANTINE_PATH,
    QUARANTINE_SCHEMA,
    TOPICS,
    TopicContract,
)
from tidelake.ingest.commit import MAX_COMMIT_ATTEMPTS, OpenChunk, unwritten
from tidelake.ingest.consumer import (
    CONSUME_BATCH,
    OFFSET_BEGINNING,
    ChunkBuilder,
    ConsumerFactory,
    ConsumerLike,
    kafka_consumer_factory,
    raise_fatal,
)
from tidelake.ingest.decode import ChunkDecoder, DecodedChunk, RawChunk
from tidelake.ingest.errors import IngestError
from tidelake.ingest.faults import FaultInjector
from tidelake.ingest.lag import PartitionLag, TopicLag
from tidelake.ingest.positions import app_id, hour_partition_key
from tidelake.ingest.report import LATE_THRESHOLD_SECONDS, BatchReport
from tidelake.ingest.tables import ensure_table
from tidelake.lake import Lake
from tidelake.settings import IngestSettings, KafkaSettings, Settings

log = logging.getLogger(__name__)

DECODE_PIECE_ROWS = 50_000
"""Records decoded at a time while the next records are consumed."""
PIECES_IN_FLIGHT = 2
"""How far consuming may run ahead of decoding and committing (bounds memory to ~2 pieces)."""


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
        self.fault = FaultInjector(self.settings.fault_point)

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
            open_chunk = OpenChunk()

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
        builder = ChunkBuilder()
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
                    raise_fatal(errors, topic)
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
                builder = ChunkBuilder()
                if closes:
                    since_commit = 0
            elif finished and since_commit:
                # The last piece was yielded before the batch knew it was finished.
                yield ChunkBuilder().build(topic), True
            if finished:
                break

    def _decode_piece(
        self,
        contract: TopicContract,
        piece: RawChunk,
        closes: bool,
        open_chunk: OpenChunk,
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
                invalid, q_txns = unwritten(quarantine, decoded.invalid, ids, ends)
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
                valid, b_txns = unwritten(bronze, decoded.valid, ids, ends)
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


__all__ = [
    "BatchReport",
    "ConsumerLike",
    "IngestEngine",
    "IngestError",
    "app_id",
    "ensure_table",
]
