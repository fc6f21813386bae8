"""One micro-batch of one topic, end to end: Kafka → ``quarantine`` + ``bronze/<table>``.

The protocol (docs/ARCHITECTURE.md, "Exactly-once ingestion"):

1. The resume position of each (topic, partition) is the bronze table's Delta txn version for
   ``app_id = "<consumer group>/<topic>/<partition>"``; missing means the earliest offset. Before
   reading, the topic's id and every position are checked against the broker
   (:mod:`tidelake.ingest.positions`): a position it cannot serve is an explicit error.
2. Records are read with ``assign()`` + seek until every partition has passed what was pending
   at the start (:meth:`IngestEngine._read`), or a record/byte/time cap is hit.
3. Pieces are decoded in bulk while the next ones are read; every ``commit_rows`` records (or
   ``max_batch_bytes / 8`` bytes) they are committed, quarantine first, bronze second, each
   commit carrying the txn offsets (:mod:`tidelake.ingest.commit`).
4. **The first failure stops the batch.** Decoding and committing run in order on one worker;
   once a piece fails, every piece queued behind it is dropped without being decoded or
   committed, so a txn never advances past an offset that is not durably in bronze or
   quarantine. The next batch resumes from what was committed.
5. After the Delta commits, the same offsets go to the Kafka consumer group, for lag tooling only.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from tidelake.contracts import (
    BRONZE_PARTITION_BY,
    QUARANTINE_PARTITION_BY,
    QUARANTINE_PATH,
    QUARANTINE_SCHEMA,
    TOPICS,
    TopicContract,
)
from tidelake.ingest.annotations import annotations_since_latest
from tidelake.ingest.commit import Committer, OpenChunk
from tidelake.ingest.consumer import (
    OFFSET_BEGINNING,
    AdminFactory,
    ConsumerFactory,
    ConsumerLike,
    consumer_config,
    kafka_admin_factory,
    kafka_consumer_factory,
)
from tidelake.ingest.decode import ChunkDecoder
from tidelake.ingest.errors import BatchAborted, OffsetRangeError, RangeProblem
from tidelake.ingest.faults import FaultHook, FaultInjector
from tidelake.ingest.lag import TopicLag, probe_lag
from tidelake.ingest.positions import (
    app_id,
    check_topic_identity,
    range_problems,
    stored_positions,
    topic_id,
    topic_partitions,
)
from tidelake.ingest.read import BatchState, Piece, read_pieces
from tidelake.ingest.report import BatchReport, account
from tidelake.ingest.tables import ensure_table
from tidelake.lake import Lake
from tidelake.settings import IngestSettings, KafkaSettings, Settings

log = logging.getLogger(__name__)

PIECES_IN_FLIGHT = 2
"""How far consuming may run ahead of decoding and committing."""


class IngestEngine:
    """Drains Kafka topics of the contract into the lake, exactly once.

    Args:
        lake: where the tables live.
        kafka: broker connection, topic prefix and consumer group.
        ingest: batch caps.
        consumer_factory: builds the consumer (tests pass a fake one).
        admin_factory: builds the admin client used for topic ids; defaults to the real one
            with the real consumer, and to none (no topic ids) with a fake consumer.
    """

    def __init__(
        self,
        lake: Lake,
        kafka: KafkaSettings,
        ingest: IngestSettings | None = None,
        consumer_factory: ConsumerFactory | None = None,
        admin_factory: AdminFactory | None = None,
    ) -> None:
        self.lake = lake
        self.kafka = kafka
        self.settings = ingest or IngestSettings()
        self.consumer_factory = consumer_factory or kafka_consumer_factory
        self.admin_factory = admin_factory or (
            kafka_admin_factory if consumer_factory is None else None
        )
        self.faults: FaultHook = FaultInjector(self.settings.fault_point)
        self._admin: Any = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        consumer_factory: ConsumerFactory | None = None,
        admin_factory: AdminFactory | None = None,
    ) -> IngestEngine:
        return cls(
            Lake.from_settings(settings.lake),
            settings.kafka,
            settings.ingest,
            consumer_factory,
            admin_factory,
        )

    # -- tables and positions -------------------------------------------------------------------

    def consumer_config(self) -> dict[str, Any]:
        base = self.kafka.client_config() if self.kafka.bootstrap_servers else {}
        return consumer_config(base, self.kafka.consumer_group, self.settings.max_batch_bytes)

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
        return stored_positions(table, self.kafka.consumer_group, topic, list(partitions))

    def topic_id(self, topic: str) -> str | None:
        """The broker's topic id, or None (no admin client, or a broker without ids)."""
        if self.admin_factory is None:
            return None
        if self._admin is None:  # one admin client per engine: a worker asks every batch
            base = self.kafka.client_config() if self.kafka.bootstrap_servers else {}
            self._admin = self.admin_factory(base)
        return topic_id(self._admin, topic)

    def lag(self, contract: TopicContract, probe_timeout: float = 1.0) -> TopicLag:
        """Pending records per partition, without trusting the watermark alone."""
        topic = contract.physical_topic(self.kafka.topic_prefix)
        conf = self.consumer_config() | {"group.id": f"{self.kafka.consumer_group}-probe"}
        consumer = self.consumer_factory(conf)
        try:
            parts = topic_partitions(consumer, topic)
            return probe_lag(
                consumer, contract.name, topic, self.positions(contract, parts), probe_timeout
            )
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    # -- one batch -----------------------------------------------------------------------------

    def ingest_topic(
        self, contract: TopicContract, partitions: Sequence[int] | None = None
    ) -> BatchReport:
        """Run one micro-batch for one topic: check positions, read, commit, report.

        Raises:
            TopicRecreatedError: the topic's id changed since bronze last recorded it.
            OffsetRangeError: some partitions' positions are outside the broker's range; the
                other partitions were ingested and the exception's ``report`` says so.
            IngestError: the topic is missing or the broker refuses us.
            Exception: the first failure of a decode or commit, after which nothing else of
                this batch was committed.
        """
        topic = contract.physical_topic(self.kafka.topic_prefix)
        group = self.kafka.consumer_group
        report = BatchReport(topic=contract.name, physical_topic=topic, started_at=time.time())
        t0 = time.perf_counter()
        bronze = self.bronze_table(contract)
        quarantine = self.quarantine_table()
        consumer = self.consumer_factory(self.consumer_config())
        problems: dict[int, RangeProblem] = {}
        try:
            parts = (
                list(partitions) if partitions is not None else topic_partitions(consumer, topic)
            )
            report.topic_id = self.topic_id(topic)
            check_topic_identity(bronze, topic, report.topic_id)
            _, newer = annotations_since_latest(bronze, topic)
            gaps = [c for c in newer if c.annotation.kind == "accept_gap"]
            report.accepted_gaps = [
                {"partition": p, "first": a, "last": b, "version": c.version, **c.annotation.audit}
                for c in gaps
                for p, rs in c.annotation.accepted.items()
                for a, b in rs
            ]
            report.since_version = (gaps[0].version - 1) if gaps else bronze.version()
            report.positions = stored_positions(bronze, group, topic, parts)
            problems, marks = range_problems(consumer, topic, report.positions)
            healthy = {p: v for p, v in report.positions.items() if p not in problems}
            report.add_stage("setup", time.perf_counter() - t0)
            if healthy:
                problems |= self._run(
                    contract, consumer, bronze, quarantine, healthy, marks, report
                )
        except Exception as exc:
            # What committed before the failure is durable; keep the report for the caller
            # (the CLI prints it, the asset records it) when the lake can still tell.
            with contextlib.suppress(Exception):
                self._finish(contract, bronze, quarantine, report)
            with contextlib.suppress(AttributeError, TypeError):
                exc.report = report  # type: ignore[attr-defined]
            raise
        finally:
            with contextlib.suppress(Exception):
                consumer.close()
        self._finish(contract, bronze, quarantine, report)
        if problems:
            error = OffsetRangeError(topic, sorted(problems.values(), key=lambda p: p.partition))
            error.report = report
            raise error
        return report

    def _run(
        self,
        contract: TopicContract,
        consumer: ConsumerLike,
        bronze: DeltaTable,
        quarantine: DeltaTable,
        positions: Mapping[int, int | None],
        marks: Mapping[int, tuple[int, int]],
        report: BatchReport,
    ) -> dict[int, RangeProblem]:
        from confluent_kafka import TopicPartition

        topic = contract.physical_topic(self.kafka.topic_prefix)
        group = self.kafka.consumer_group
        targets = {
            p: (pos if pos is not None else max(marks[p][0], 0), marks[p][1])
            for p, pos in positions.items()
        }
        targets = {p: (begin, max(high, begin)) for p, (begin, high) in targets.items()}
        consumer.assign(
            [
                TopicPartition(topic, p, pos if pos is not None else OFFSET_BEGINNING)
                for p, pos in positions.items()
            ]
        )
        decoder = ChunkDecoder(
            contract,
            max_message_bytes=self.settings.max_message_bytes,
            max_future_seconds=self.settings.max_future_seconds,
        )
        committer = Committer(
            bronze=bronze,
            quarantine=quarantine,
            topic=topic,
            group=group,
            ids={p: app_id(group, topic, p) for p in positions},
            topic_id=report.topic_id,
            faults=self.faults,
            write_attempts=self.settings.write_attempts,
        )
        chunk = OpenChunk(
            starts={p: v for p, v in positions.items() if v is not None},
            valid_schema=decoder.schema,
            invalid_schema=QUARANTINE_SCHEMA,
        )
        state = BatchState()
        problems: dict[int, RangeProblem] = {}
        event_ids: list[pa.ChunkedArray] = []
        touched: set[str] = set()
        begins = {p: b for p, (b, _) in targets.items()}
        ids_and_hours = (event_ids, touched)

        def work(piece: Piece) -> dict[int, int] | None:
            if state.failed is not None:
                raise BatchAborted(f"{topic}: not committed, an earlier step failed")
            try:
                return self._process(
                    piece, chunk, decoder, committer, begins, state, report, ids_and_hours
                )
            except BaseException as exc:
                state.failed = exc
                raise

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ingest-{contract.name}")
        pending: deque[Future[dict[int, int] | None]] = deque()

        def finish_oldest() -> None:
            ends = pending.popleft().result()
            if ends:
                self._group_commit(consumer, topic, ends, report)

        try:
            pieces = read_pieces(
                consumer, topic, self.settings, report, targets, state, problems, marks
            )
            for piece in pieces:
                self.faults.hit("after_consume")
                while len(pending) >= PIECES_IN_FLIGHT:
                    finish_oldest()
                pending.append(pool.submit(work, piece))
            while pending:
                finish_oldest()
        except BaseException as exc:
            if state.failed is None:
                state.failed = exc
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            decoder.close()
        if event_ids:
            ids = pa.chunked_array([c for arr in event_ids for c in arr.chunks], pa.string())
            report.duplicate_event_ids = len(ids) - pc.count_distinct(ids).as_py()
        report.partitions_touched = sorted(touched)
        return problems

    def _process(
        self,
        piece: Piece,
        chunk: OpenChunk,
        decoder: ChunkDecoder,
        committer: Committer,
        begins: Mapping[int, int],
        state: BatchState,
        report: BatchReport,
        ids_and_hours: tuple[list[pa.ChunkedArray], set[str]],
    ) -> dict[int, int] | None:
        """Decode one piece (on the worker); on a closing piece commit the open chunk.

        Returns the offsets committed, for the consumer-group mirror.
        """
        raw = piece.raw
        if len(raw):
            self.faults.hit("decode")
            t = time.perf_counter()
            decoded = decoder.decode(raw, datetime.now(UTC))
            report.add_stage("decode", time.perf_counter() - t)
            chunk.add(decoded, raw.partitions, raw.offsets, piece.nbytes)
            report.records += len(raw)
            report.bytes += decoded.nbytes
            for p in np.unique(raw.partitions).tolist():
                p = int(p)
                first = int(raw.offsets[raw.partitions == p].min())
                chunk.starts.setdefault(p, first)
                prev = report.offsets.get(p)
                report.offsets[p] = (prev[0] if prev else first, piece.ends.get(p, first + 1))
        for p, end in piece.ends.items():
            chunk.starts.setdefault(p, begins[p])
            chunk.ends[p] = max(end, chunk.ends.get(p, end))
            if p in report.offsets:
                report.offsets[p] = (report.offsets[p][0], chunk.ends[p])
        if not piece.closes or not chunk.ends:
            return None
        closed = chunk.take()
        committed = committer.commit(closed, report)
        account(report, committed.valid, committed.invalid, *ids_and_hours)
        for p, ranges in committed.skipped.items():
            report.skipped.setdefault(p, []).extend(ranges)
            report.skipped_offsets += sum(b - a + 1 for a, b in ranges)
        state.hold(-closed.nbytes)
        return closed.ends

    def _group_commit(
        self, consumer: ConsumerLike, topic: str, ends: Mapping[int, int], report: BatchReport
    ) -> None:
        """Mirror committed offsets to the consumer group (informational; failures only logged)."""
        from confluent_kafka import TopicPartition

        self.faults.hit("before_group_commit")
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

    def _finish(
        self,
        contract: TopicContract,
        bronze: DeltaTable,
        quarantine: DeltaTable,
        report: BatchReport,
    ) -> None:
        """Versions, the window the checks must cover, and the log line."""
        topic = contract.physical_topic(self.kafka.topic_prefix)
        bronze.update_incremental()
        quarantine.update_incremental()
        report.bronze_version = bronze.version()
        report.quarantine_version = quarantine.version()
        gap_starts: dict[int, int] = {}
        for gap in report.accepted_gaps:
            p = int(gap["partition"])
            gap_starts[p] = min(gap_starts.get(p, int(gap["first"])), int(gap["first"]))
        for p, before in report.positions.items():
            after = bronze.transaction_version(app_id(self.kafka.consumer_group, topic, p))
            if after is None:
                continue
            first = before if before is not None else report.offsets.get(p, (after, after))[0]
            first = min(first, gap_starts.get(p, first))
            if after > first or p in gap_starts:
                report.window[p] = (first, after)
        report.finished_at = time.time()
        # An idle worker runs empty batches all day: only batches that did something are news.
        log.log(
            logging.INFO if report.records or report.commits else logging.DEBUG,
            "%s",
            report.summary(),
        )

    def ingest_all(self, contracts: Iterable[TopicContract] | None = None) -> list[BatchReport]:
        """One batch per topic of the registry (or the given contracts), in order."""
        return [self.ingest_topic(c) for c in (contracts or TOPICS.values())]
