"""The read loop of one batch: consume until every partition passed what was pending at the
start, and cut the records into pieces for the decode/commit worker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from tidelake.ingest.consumer import (
    CONSUME_BATCH,
    ChunkBuilder,
    ConsumerLike,
    memory_caps,
    out_of_range_partitions,
)
from tidelake.ingest.decode import RawChunk
from tidelake.ingest.errors import RangeProblem
from tidelake.ingest.report import BatchReport
from tidelake.settings import IngestSettings

log = logging.getLogger(__name__)

DECODE_PIECE_ROWS = 50_000
"""Records decoded at a time while the next records are consumed."""


@dataclass
class Piece:
    """Raw records read since the last cut, and where the consumer stood when it was cut."""

    raw: RawChunk
    ends: dict[int, int]
    """Partition → consumer position at the cut, for partitions that advanced since the last."""
    closes: bool
    """The last piece of a commit (rows/bytes reached, or the batch is over)."""
    nbytes: int


@dataclass
class BatchState:
    """What the reader and the decode/commit worker share during one batch."""

    failed: BaseException | None = None
    held_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self, n: int) -> int:
        with self.lock:
            self.held_bytes += n
            return self.held_bytes


def read_pieces(
    consumer: ConsumerLike,
    topic: str,
    s: IngestSettings,
    report: BatchReport,
    targets: Mapping[int, tuple[int, int]],
    state: BatchState,
    problems: dict[int, RangeProblem],
    marks: Mapping[int, tuple[int, int]],
) -> Iterator[Piece]:
    """Consume what was pending when the batch started, in pieces.

    A partition is done once the consumer's position has reached its target (the watermark
    at the start, which may under-report the end) and then either stayed quiet for
    ``quiet_seconds`` or delivered a record stamped after the batch started. Such a record
    was produced after the start, so everything pending at the start has been read; newer
    records are left for the next batch, which keeps a steady stream from holding a batch
    open. The position is the consumer's, so control markers and aborted transactional
    records at the end count as passed. (A producer clock running ahead can end a batch
    early; that only defers records.) The batch ends when every partition is done, on a
    record/time cap, or as soon as the worker reports a failure.

    A piece is cut at 50k records or ``max_batch_bytes/16`` bytes; a commit closes at
    ``commit_rows`` records or ``max_batch_bytes/8`` bytes (see
    :mod:`tidelake.ingest.consumer` for the memory bound).
    """
    from confluent_kafka import TopicPartition

    caps = memory_caps(s.max_batch_bytes)
    piece_rows = min(DECODE_PIECE_ROWS, s.commit_rows)
    start = time.monotonic()
    start_ms = int(time.time() * 1000)
    last_seen = dict.fromkeys(targets, start)
    reached = {p: begin for p, (begin, _) in targets.items()}
    cut_at = dict(reached)
    tps = [TopicPartition(topic, p) for p in targets]
    live: set[int] = set()
    done: set[int] = set()
    total = since_rows = since_bytes = 0
    builder = ChunkBuilder()
    while state.failed is None:
        t = time.perf_counter()
        msgs = consumer.consume(
            num_messages=max(
                1,
                min(
                    CONSUME_BATCH,
                    s.max_batch_records - total,
                    piece_rows - len(builder),
                    s.commit_rows - since_rows - len(builder),
                ),
            ),
            timeout=min(0.2, s.quiet_seconds),
        )
        now = time.monotonic()
        if msgs:
            errors = [m for m in msgs if m.error() is not None]
            if errors:
                for p, why in out_of_range_partitions(errors, topic).items():
                    if p in targets and p not in problems:
                        low, high = marks.get(p, (0, 0))
                        log.error("%s[%d]: %s", topic, p, why)
                        problems[p] = RangeProblem(p, reached[p], low, high, "expired")
                        done.add(p)
                msgs = [m for m in msgs if m.error() is None]
            n_before = len(builder)
            builder.extend(msgs)
            total += len(msgs)
            # Messages of a partition arrive in offset order: the last one per partition wins.
            new_parts = builder.partitions[n_before:]
            latest = dict(zip(new_parts, builder.offsets[n_before:], strict=True))
            stamps = dict(zip(new_parts, builder.timestamps[n_before:], strict=True))
            for p, offset in latest.items():
                reached[p] = max(reached[p], offset + 1)
                last_seen[p] = now
                if stamps[p] >= start_ms:
                    live.add(p)
        for tp in consumer.position(tps):
            # Past control markers and aborted records, which are never delivered.
            if tp.offset >= 0 and tp.partition in reached and tp.partition not in problems:
                reached[tp.partition] = max(reached[tp.partition], int(tp.offset))
        report.add_stage("consume", time.perf_counter() - t)
        for p, (_, target) in targets.items():
            quiet = now - last_seen[p] >= s.quiet_seconds
            if p not in done and reached[p] >= target and (p in live or quiet):
                done.add(p)
        finished = (
            len(done) == len(targets)
            or total >= s.max_batch_records
            or now - start >= s.max_batch_seconds
        )
        full = (
            since_rows + len(builder) >= s.commit_rows
            or since_bytes + builder.nbytes >= caps["commit_bytes"]
        )
        advanced = {p: r for p, r in reached.items() if r > cut_at[p]}
        cut = (
            len(builder) >= piece_rows or builder.nbytes >= caps["piece_bytes"] or full or finished
        )
        if cut and (len(builder) or advanced):
            closes = full or finished
            since_rows += len(builder)
            since_bytes += builder.nbytes
            held = state.hold(builder.nbytes)
            report.peak_held_bytes = max(report.peak_held_bytes, held)
            yield Piece(builder.build(topic), advanced, closes, builder.nbytes)
            builder = ChunkBuilder()
            cut_at = dict(reached)
            if closes:
                since_rows = since_bytes = 0
        elif finished and since_rows:
            # The last piece was cut before the batch knew it was finished.
            yield Piece(ChunkBuilder().build(topic), {}, True, 0)
        if finished:
            break
