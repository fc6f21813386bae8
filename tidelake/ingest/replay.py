"""Quarantine replay: move records that pass the *current* contract from ``quarantine`` to bronze.

After a contract fix, a new event type or a raised ``TIDELAKE_MAX_MESSAGE_BYTES``, records in
quarantine may now be valid. :func:`replay_quarantine` re-validates them with the one validator
(:class:`~tidelake.ingest.decode.ChunkDecoder`) and moves those that pass into
``bronze/<table>`` with their original Kafka coordinates (``_topic, _partition, _offset,
_kafka_timestamp``, key) and their original ``_ingested_at`` (lateness is measured from it). The
rest stay in quarantine untouched.

Protocol. Delta has no multi-table transaction, so order and idempotence do the work. Per topic:

0. **Recover** (always first, dry runs only count): coordinates in *both* bronze and quarantine
   (a replay crashed between its two commits, or a record re-decoded differently after a crash of
   ingestion) are deleted from quarantine. Bronze wins: the record was valid when written there.
1. **Append**, per chunk of at most :data:`CHUNK_ROWS` quarantine rows (and
   :data:`CHUNK_BYTES` of raw values, so memory stays bounded whatever the message sizes): the
   rows are rebuilt as a :class:`RawChunk` and decoded; the rows that are now valid, minus the
   coordinates bronze already holds (re-read before every attempt), are appended to bronze in
   one commit annotated ``kind="replay"``. The commit moves no position: its rows lie below
   bronze's stored positions. It carries one txn, ``<group>/<topic>/replay``
   (:func:`replay_app_id`), bumped by each replay commit, for one reason: deltalake lets two
   blind appends from one snapshot both commit (measured with 1.6), so two replays racing on a
   topic would both append the same records. With the txn the second gets
   ``CommitFailedError``, re-reads bronze and drops what the first wrote.
2. **Delete** exactly those coordinates from quarantine in one commit annotated
   ``kind="replay"``. It is a ``MERGE ... WHEN MATCHED DELETE`` with the coordinates as the source
   table rather than ``DELETE`` with a literal predicate: deltalake 1.6 crashed the process
   (SIGSEGV) on a ``DELETE`` whose ``_offset IN (...)`` list had 30k values, and an ``OR`` of
   1,000 offset ranges took 6 s, while a merge of 50k coordinates takes a fraction of a second.

Both steps retry on ``CommitFailedError`` (ingestion appends concurrently; another replay may
race), re-reading the table each time; both are idempotent. A crash at any point leaves every
offset in bronze or in quarantine: at worst in both, which the next run's step 0 resolves; never
in neither, because a coordinate leaves quarantine only once bronze holds it.

Which records are eligible: only quarantine rows below bronze's stored position of their
partition. Rows at or past it belong to an ingestion batch whose bronze commit has not happened
yet (quarantine commits first); moving one would let that batch's retry write it to bronze a
second time. They are counted as ``in_flight`` and left alone.

Ingestion time: each record is judged at its own original ``_ingested_at``
(:func:`~tidelake.ingest.replay_judge.judge` says how, with few decoder passes). Counts and
rendering of the outcome live in :mod:`tidelake.ingest.replay_result`; coordinate and position
helpers in :mod:`tidelake.ingest.replay_coords`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from tidelake.contracts import QUARANTINE_PATH, TOPICS, QuarantineReason, TopicContract
from tidelake.ingest.annotations import CommitAnnotation
from tidelake.ingest.decode import ChunkDecoder
from tidelake.ingest.errors import IngestError
from tidelake.ingest.replay_coords import (
    COORDS,
    Positions,
    bronze_holding,
    coords_frame,
    count_rows,
    first_per_coordinate,
    hour_keys,
    member,
    offset_bounds,
    rows_of,
    topic_dataset,
    without,
)
from tidelake.ingest.replay_judge import judge
from tidelake.ingest.replay_result import ReplayResult, ReplayUsageError, TopicReplay
from tidelake.lake import Lake
from tidelake.settings import IngestSettings, KafkaSettings

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
"""Quarantine rows re-validated and moved per pair of commits."""
CHUNK_BYTES = 64 * 1024 * 1024
"""Raw bytes per chunk at most (a chunk always takes at least one row)."""
SCAN_BATCH_ROWS = 256
"""Rows per batch read from quarantine; small because a quarantined value can be very large."""
MAX_COMMIT_ATTEMPTS = 20
"""Conflicting commits tolerated for one step of one chunk before the topic fails."""


def replay_app_id(group: str, physical_topic: str) -> str:
    """The bronze txn app_id that serialises replay commits of one topic (never a position)."""
    return f"{group}/{physical_topic}/replay"


def replay_quarantine(
    lake: Lake,
    kafka: KafkaSettings,
    ingest: IngestSettings | None = None,
    *,
    contracts: Sequence[TopicContract] | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    chunk_bytes: int = CHUNK_BYTES,
) -> ReplayResult:
    """Re-validate quarantined records and move those that now pass into bronze (module docstring).

    Args:
        lake: where the tables live.
        kafka: topic prefix and consumer group (whose positions bound what is eligible).
        ingest: the validator's limits (``max_message_bytes``, ``max_future_seconds``).
        contracts: topics to replay (default: every topic of the registry).
        reason: only quarantine rows with this reason (one of :class:`QuarantineReason`).
        dry_run: change nothing; count what would move, still fail and be recovered.
        chunk_rows, chunk_bytes: bounds of one chunk.

    Raises:
        ReplayUsageError: ``reason`` is not a quarantine reason.
    """
    reasons = [r.value for r in QuarantineReason]
    if reason is not None and reason not in reasons:
        raise ReplayUsageError(f"unknown reason {reason!r}; valid reasons: {', '.join(reasons)}")
    settings = ingest or IngestSettings()
    result = ReplayResult(dry_run=dry_run, reason=reason)
    quarantine = lake.open(QUARANTINE_PATH)
    if quarantine is None:
        result.quarantine_exists = False
        return result
    for contract in contracts if contracts is not None else list(TOPICS.values()):
        physical = contract.physical_topic(kafka.topic_prefix)
        outcome = TopicReplay(topic=contract.name, physical_topic=physical)
        result.topics.append(outcome)
        try:
            _TopicReplayer(
                lake, kafka, settings, contract, outcome, reason, dry_run, chunk_rows, chunk_bytes
            ).run()
        except Exception as exc:  # one topic's failure must not stop the others
            log.exception("%s: replay failed", physical)
            outcome.error = f"{type(exc).__name__}: {exc}"
    return result


class _TopicReplayer:
    """Steps 0-2 of the protocol for one topic."""

    def __init__(
        self,
        lake: Lake,
        kafka: KafkaSettings,
        settings: IngestSettings,
        contract: TopicContract,
        outcome: TopicReplay,
        reason: str | None,
        dry_run: bool,
        chunk_rows: int,
        chunk_bytes: int,
    ) -> None:
        self.lake = lake
        self.kafka = kafka
        self.settings = settings
        self.contract = contract
        self.out = outcome
        self.topic = outcome.physical_topic
        self.reason = reason
        self.dry_run = dry_run
        self.chunk_rows = max(1, chunk_rows)
        self.chunk_bytes = max(1, chunk_bytes)
        self.touched: set[str] = set()

    def run(self) -> None:
        quarantine = self.lake.open(QUARANTINE_PATH)
        bronze = self.lake.open(self.contract.bronze_path)
        if quarantine is None:
            return
        self.out.quarantine_version = quarantine.version()
        if bronze is None:
            # No bronze commit yet: every quarantined row of the topic is still in flight.
            self.out.in_flight = count_rows(quarantine, self.topic, self.reason)
            return
        self.out.bronze_version = bronze.version()
        positions = Positions(bronze, self.kafka.consumer_group, self.topic)

        # Step 0: bronze wins over quarantine.
        both = self._in_both(bronze, quarantine)
        self.out.recovered = both.height
        if both.height and not self.dry_run:
            self._delete(quarantine, both, step="recover")

        decoder = ChunkDecoder(
            self.contract,
            max_message_bytes=self.settings.max_message_bytes,
            max_future_seconds=self.settings.max_future_seconds,
        )
        try:
            # The scan is a snapshot taken after step 0; rows it yields that a racing replay
            # has moved since are harmless (steps 1 and 2 are idempotent).
            for chunk in self._chunks(quarantine, positions):
                if self.dry_run and both.height:
                    chunk = without(chunk, both)
                if chunk.num_rows:
                    self._replay_chunk(decoder, bronze, quarantine, chunk)
        finally:
            decoder.close()
            # Also after a failure: chunks committed before it touched these hours.
            self.out.partitions_touched = sorted(self.touched)
            self.out.bronze_version = bronze.version()
            self.out.quarantine_version = quarantine.version()

    # -- reading ---------------------------------------------------------------------------------

    def _in_both(self, bronze: DeltaTable, quarantine: DeltaTable) -> pl.DataFrame:
        """Coordinates of this topic present in bronze and in quarantine (any reason)."""
        dataset = topic_dataset(quarantine, self.topic)
        q = coords_frame(dataset.to_table(columns=COORDS, filter=rows_of(self.topic)))
        return bronze_holding(self.lake, bronze, self.topic, q) if q.height else q

    def _chunks(self, quarantine: DeltaTable, positions: Positions) -> Iterator[pa.Table]:
        """Eligible quarantine rows of the topic (and reason), in chunks bounded by rows and bytes.

        Readahead is off because a quarantined value can be as large as the broker allows.
        """
        scanner = ds.Scanner.from_dataset(
            topic_dataset(quarantine, self.topic),
            columns=[
                "_partition",
                "_offset",
                "_kafka_timestamp",
                "_ingested_at",
                "key",
                "raw",
                "error",
            ],
            filter=rows_of(self.topic, self.reason),
            batch_size=SCAN_BATCH_ROWS,
            batch_readahead=1,
            fragment_readahead=1,
        )
        pending: list[pa.RecordBatch] = []
        rows = nbytes = 0
        for batch in scanner.to_batches():
            batch = positions.eligible(batch, self.out)
            if not batch.num_rows:
                continue
            pending.append(batch)
            rows += batch.num_rows
            nbytes += batch.nbytes
            while pending and (rows >= self.chunk_rows or nbytes >= self.chunk_bytes):
                table = pa.Table.from_batches(pending)
                take = min(rows, self.chunk_rows)
                yield table.slice(0, take)
                rest = table.slice(take)
                pending = rest.to_batches() if rest.num_rows else []
                rows, nbytes = rest.num_rows, rest.nbytes
        if pending:
            yield pa.Table.from_batches(pending)

    # -- one chunk -------------------------------------------------------------------------------

    def _replay_chunk(
        self, decoder: ChunkDecoder, bronze: DeltaTable, quarantine: DeltaTable, chunk: pa.Table
    ) -> None:
        chunk = first_per_coordinate(chunk)
        judged = judge(decoder, self.topic, chunk)
        self.out.examined += chunk.num_rows
        for (before, now), n in judged.still_failing.items():
            by_now = self.out.still_failing.setdefault(before, {})
            by_now[now] = by_now.get(now, 0) + n
        valid = judged.valid
        if not valid.num_rows:
            return
        if self.dry_run:
            self._count_moved(valid, judged.valid_reasons)
            return
        written, written_reasons = self._append(bronze, valid, judged.valid_reasons)
        self._count_moved(written, written_reasons)
        self.out.recovered += valid.num_rows - written.num_rows
        self._delete(quarantine, coords_frame(valid), step="move", reasons=judged.valid_reasons)

    def _count_moved(self, rows: pa.Table, reasons: npt.NDArray[np.object_]) -> None:
        self.out.moved += rows.num_rows
        for r, n in Counter(reasons.tolist()).items():
            self.out.moved_by_reason[r] = self.out.moved_by_reason.get(r, 0) + n
        self.touched |= hour_keys(rows)

    # -- writing ---------------------------------------------------------------------------------

    def _append(
        self, bronze: DeltaTable, valid: pa.Table, reasons: npt.NDArray[np.object_]
    ) -> tuple[pa.Table, npt.NDArray[np.object_]]:
        """Step 1: append the rows bronze does not hold yet. Returns what this call wrote."""
        rid = replay_app_id(self.kafka.consumer_group, self.topic)
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            bronze.update_incremental()
            held = bronze_holding(self.lake, bronze, self.topic, coords_frame(valid))
            keep = ~member(valid, held)
            rows, kept_reasons = valid.filter(pa.array(keep)), reasons[keep]
            if not rows.num_rows:
                return rows, kept_reasons
            annotation = CommitAnnotation(
                kind="replay",
                topic=self.topic,
                group=self.kafka.consumer_group,
                stats={
                    "step": "move",
                    "rows": rows.num_rows,
                    "by_reason": dict(Counter(kept_reasons.tolist())),
                    "offsets": offset_bounds(rows),
                    "hours": sorted(hour_keys(rows)),
                },
            )
            serial = (bronze.transaction_version(rid) or 0) + 1
            try:
                write_bronze(bronze, rows, annotation, Transaction(rid, serial))
            except CommitFailedError as exc:
                log.warning("%s: concurrent bronze commit (%s); retry %d", self.topic, exc, attempt)
                time.sleep(min(0.05 * attempt, 1.0))
                continue
            self.out.commits += 1
            return rows, kept_reasons
        raise IngestError(f"{self.topic}: gave up after {MAX_COMMIT_ATTEMPTS} conflicting commits")

    def _delete(
        self,
        quarantine: DeltaTable,
        coords: pl.DataFrame,
        step: str,
        reasons: npt.NDArray[np.object_] | None = None,
    ) -> None:
        """Step 2 (and step 0): delete exactly ``coords`` of this topic from quarantine.

        ``reasons`` (the rows' quarantine reasons, when known) go into the annotation's stats.
        """
        stats: dict[str, Any] = {"step": step, "rows": coords.height}
        if reasons is not None:
            stats["by_reason"] = dict(Counter(reasons.tolist()))
        annotation = CommitAnnotation(
            kind="replay", topic=self.topic, group=self.kafka.consumer_group, stats=stats
        )
        source = coords.select(
            pl.col("_partition").cast(pl.Int32), pl.col("_offset").cast(pl.Int64)
        ).to_arrow()
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            try:
                if delete_from_quarantine(quarantine, self.topic, source, annotation):
                    self.out.commits += 1
                return
            except CommitFailedError as exc:
                log.warning(
                    "%s: concurrent quarantine commit (%s); retry %d", self.topic, exc, attempt
                )
                time.sleep(min(0.05 * attempt, 1.0))
        raise IngestError(f"{self.topic}: gave up after {MAX_COMMIT_ATTEMPTS} conflicting commits")


def write_bronze(
    bronze: DeltaTable, rows: pa.Table, annotation: CommitAnnotation, serial: Transaction
) -> None:
    """One replay append to bronze: the rows, the annotation and the replay txn, no position."""
    write_deltalake(
        bronze,
        rows,
        mode="append",
        commit_properties=CommitProperties(
            custom_metadata=annotation.custom_metadata(), app_transactions=[serial]
        ),
    )


def delete_from_quarantine(
    quarantine: DeltaTable, topic: str, coords: pa.Table, annotation: CommitAnnotation
) -> int:
    """Delete the rows of ``topic`` at ``coords`` (``_partition``, ``_offset``) in one commit.

    Returns the rows deleted; nothing matching makes no commit. The ``_topic`` literal in the
    predicate lets the merge prune to the topic's Delta partitions.
    """
    quarantine.update_incremental()
    metrics = (
        quarantine.merge(
            source=coords,
            predicate=(
                f"t._topic = {_sql_literal(topic)} AND t._partition = s._partition "
                "AND t._offset = s._offset"
            ),
            source_alias="s",
            target_alias="t",
            commit_properties=CommitProperties(custom_metadata=annotation.custom_metadata()),
        )
        .when_matched_delete()
        .execute()
    )
    return int(metrics.get("num_target_rows_deleted", 0))


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


__all__ = [
    "CHUNK_BYTES",
    "CHUNK_ROWS",
    "delete_from_quarantine",
    "replay_app_id",
    "replay_quarantine",
    "write_bronze",
]
