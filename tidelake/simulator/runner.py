"""Send planned messages to Kafka and record every acknowledged one in the producer ledger."""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TextIO

import pyarrow as pa

from tidelake.contracts import TOPICS
from tidelake.lake import Lake
from tidelake.ledger import LEDGER_PATH, LEDGER_SCHEMA, LedgerKind
from tidelake.settings import Settings
from tidelake.simulator.config import SimulatorConfig
from tidelake.simulator.generator import EventSimulator, PlannedMessage

log = logging.getLogger(__name__)

_POLL_EVERY = 256
_FLUSH_TIMEOUT_SECONDS = 60.0
_MAX_SLEEP = 0.1
_LOGGED_ERRORS = 10


class KafkaMessage(Protocol):
    """What a delivery report needs from ``confluent_kafka.Message``."""

    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


class Producer(Protocol):
    """The part of ``confluent_kafka.Producer`` the runner uses (a fake can stand in)."""

    def produce(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        *,
        on_delivery: Callable[[Any, Any], None] | None = ...,
    ) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...
    def __len__(self) -> int: ...


@dataclass
class SimulationSummary:
    """What one run did. Counts are of acknowledged (ledgered) messages unless named otherwise.

    Attributes:
        run_id: the ledger ``run_id`` of this invocation.
        seed: the seed used (pass it back to reproduce the run).
        sent: messages handed to the producer.
        delivered: messages the broker acknowledged.
        failed: messages with a delivery error or still unacknowledged at exit.
        by_topic: delivered per logical topic.
        by_kind: delivered per ledger kind.
        by_expected_error: delivered malformed messages per expected quarantine reason.
        by_label: delivered labelled (scenario) messages per ledger label.
        ledger_rows: rows appended to the ledger.
        ledger_error: the last ledger write error, if rows could not be written.
        elapsed_seconds: wall time of the run.
    """

    run_id: str
    seed: int
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    by_expected_error: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, int] = field(default_factory=dict)
    ledger_rows: int = 0
    ledger_error: str | None = None
    elapsed_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every message was acknowledged and every acknowledged message is in the ledger."""
        return self.failed == 0 and self.ledger_error is None


def new_run_id(now: float | None = None) -> str:
    """A unique, sortable run id: ``sim-20261121T234004Z-3f2a9c1b``."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    return f"sim-{stamp:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def producer_config(settings: Settings, config: SimulatorConfig) -> dict[str, Any]:
    """librdkafka settings of the simulator's producer.

    Idempotence + ``acks=all`` so broker-side retries never duplicate (the only duplicates are
    the deliberate ones); a short linger batches without adding visible latency; the message
    size limit leaves room for the deliberately ``oversized`` messages.
    """
    conf = settings.kafka.client_config()
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": config.compression,
            "queue.buffering.max.messages": 500_000,
            "message.max.bytes": max(1_000_000, settings.ingest.max_message_bytes + 64 * 1024),
            "client.id": "tidelake-simulator",
        }
    )
    return conf


def build_producer(settings: Settings, config: SimulatorConfig) -> Producer:
    """A real ``confluent_kafka.Producer`` for ``settings`` (raises ``ConfigError`` if unset)."""
    from confluent_kafka import Producer as KafkaProducer

    producer: Producer = KafkaProducer(producer_config(settings, config))
    return producer


class LedgerWriter:
    """Buffers ledger rows and appends them to ``_ledger/produced`` in chunks.

    A failed write keeps the rows and retries at the next flush, so a slow or briefly
    unreachable lake delays the ledger but does not lose it.
    """

    def __init__(self, lake: Lake | None, run_id: str) -> None:
        self.lake = lake
        self.run_id = run_id
        self.written = 0
        self.last_error: str | None = None
        self._rows: list[tuple[PlannedMessage, int, int, int]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, msg: PlannedMessage, partition: int, offset: int, produced_at_us: int) -> None:
        """Record one acknowledged message (``produced_at_us``: ack time, epoch microseconds)."""
        self._rows.append((msg, partition, offset, produced_at_us))

    def table(self) -> pa.Table:
        """The buffered rows as an Arrow table with :data:`LEDGER_SCHEMA`."""
        rows = self._rows
        msgs = [r[0] for r in rows]
        columns: dict[str, list[Any]] = {
            "run_id": [self.run_id] * len(rows),
            "topic": [m.topic for m in msgs],
            "event_id": [m.event_id for m in msgs],
            "event_type": [m.event_type for m in msgs],
            "event_time": [
                None if m.event_time_ms is None else m.event_time_ms * 1000 for m in msgs
            ],
            "kind": [m.kind.value for m in msgs],
            "expected_error": [
                None if m.expected_error is None else m.expected_error.value for m in msgs
            ],
            "partition": [r[1] for r in rows],
            "offset": [r[2] for r in rows],
            "produced_at": [r[3] for r in rows],
            "label": [m.label for m in msgs],
        }
        arrays = [pa.array(columns[f.name], type=f.type) for f in LEDGER_SCHEMA]
        return pa.Table.from_arrays(arrays, schema=LEDGER_SCHEMA)

    def flush(self) -> bool:
        """Append the buffered rows; ``False`` (rows kept) if the write failed.

        ``schema_mode="merge"`` lets the append add columns the table lacks: ledgers written
        before the ``label`` column existed gain it (null on their old rows).
        """
        if not self._rows or self.lake is None:
            self._rows = []
            return True
        from deltalake import write_deltalake

        table = self.table()
        try:
            write_deltalake(
                self.lake.uri(LEDGER_PATH),
                table,
                mode="append",
                storage_options=self.lake.storage_options or None,
                partition_by=["topic"],
                schema_mode="merge",
            )
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("ledger write of %d rows failed, will retry: %s", len(self), exc)
            return False
        self.written += table.num_rows
        self.last_error = None
        self._rows = []
        return True


class _Run:
    """The mutable state of one run; delivery callbacks update it (inside poll/flush)."""

    def __init__(self, summary: SimulationSummary, ledger: LedgerWriter) -> None:
        self.summary = summary
        self.ledger = ledger
        self.topic_kind: Counter[tuple[str, LedgerKind]] = Counter()
        self.malformed: Counter[str] = Counter()
        self.labels: Counter[str] = Counter()

    def delivered(self, msg: PlannedMessage, err: Any, kafka_msg: Any) -> None:
        if err is not None:
            self.summary.failed += 1
            if self.summary.failed <= _LOGGED_ERRORS:
                log.error("delivery failed on %s (%s): %s", msg.topic, msg.kind.value, err)
            return
        self.summary.delivered += 1
        self.topic_kind[msg.topic, msg.kind] += 1
        if msg.expected_error is not None:
            self.malformed[msg.expected_error.value] += 1
        if msg.label is not None:
            self.labels[msg.label] += 1
        self.ledger.add(msg, kafka_msg.partition(), kafka_msg.offset(), time.time_ns() // 1000)


class _Progress:
    """One line a second on the terminal: sent, rate, late pending, delivered."""

    def __init__(self, out: TextIO | None, clock: Callable[[], float]) -> None:
        self.out = out
        self.clock = clock
        self.started = clock()
        self.next_at = self.started + 1.0
        self.last_sent = 0
        self.last_at = self.started

    def tick(self, summary: SimulationSummary, pending: int, force: bool = False) -> None:
        if self.out is None:
            return
        now = self.clock()
        if not force and now < self.next_at:
            return
        rate = (summary.sent - self.last_sent) / max(now - self.last_at, 1e-9)
        self.last_sent, self.last_at, self.next_at = summary.sent, now, now + 1.0
        self.out.write(
            f"simulate: {now - self.started:6.1f}s sent {summary.sent} ({rate:,.0f}/s) "
            f"late pending {pending} delivered {summary.delivered} failed {summary.failed}\n"
        )
        self.out.flush()


def run_simulation(
    settings: Settings,
    config: SimulatorConfig,
    *,
    producer: Producer | None = None,
    stop_event: threading.Event | None = None,
    progress: bool = True,
    progress_stream: TextIO | None = None,
    messages: Iterable[PlannedMessage] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] | None = None,
) -> SimulationSummary:
    """Produce a simulated run to Kafka and append every acknowledged message to the ledger.

    Messages are sent at their planned ``send_at`` (paced runs) or as fast as the producer takes
    them (``max_rate``). Ledger rows come from delivery reports only (partition, offset, ack
    time), are flushed every ``ledger_flush_seconds`` or ``ledger_flush_rows``, and at exit.
    Setting ``stop_event`` ends arrivals; held-back late messages are then sent at once.

    Args:
        settings: Kafka, lake and ingest settings.
        config: what to produce.
        producer: a ready producer (tests pass a fake); default: built from ``settings``.
        stop_event: set it to stop an unbounded run cleanly.
        progress: write a progress line to ``progress_stream`` (stderr) once a second.
        progress_stream: where progress goes; default ``sys.stderr``.
        messages: send these instead of simulating (e.g. pre-generated for a benchmark).
        clock: wall clock; injectable for tests.
        sleep: how to wait for a send time; default: ``producer.poll`` (serves delivery reports
            while waiting). Tests inject a fake that advances a fake clock.

    Returns:
        Counts of what was sent, delivered and failed, and the ``run_id``.
    """
    started = clock()
    simulator = EventSimulator(
        config, max_message_bytes=settings.ingest.max_message_bytes, start=started, clock=clock
    )
    run_id = new_run_id(started)
    summary = SimulationSummary(run_id=run_id, seed=simulator.seed)
    lake = Lake.from_settings(settings.lake) if config.write_ledger else None
    ledger = LedgerWriter(lake, run_id)
    run = _Run(summary, ledger)
    if producer is None:
        producer = build_producer(settings, config)
    out = (progress_stream or sys.stderr) if progress else None
    ticker = _Progress(out, clock)
    prefix = settings.kafka.topic_prefix
    physical = {name: c.physical_topic(prefix) for name, c in TOPICS.items()}
    log.info("simulator run %s seed %d", run_id, simulator.seed)

    next_ledger_flush = started + config.ledger_flush_seconds
    flush_rows = config.ledger_flush_rows
    stop = stop_event or threading.Event()
    stopping = False
    source: Iterable[PlannedMessage] = simulator if messages is None else messages

    def housekeeping(now: float) -> None:
        nonlocal next_ledger_flush
        ticker.tick(summary, simulator.pending_late)
        if len(ledger) >= flush_rows or (len(ledger) and now >= next_ledger_flush):
            ledger.flush()
            next_ledger_flush = now + config.ledger_flush_seconds

    for msg in source:
        if not stopping and stop.is_set():
            stopping = True
            simulator.stop()
            if messages is not None:
                break
        # Pace: wait for the planned send time, serving delivery reports meanwhile.
        while not stopping:
            now = clock()
            wait = msg.send_at - now
            if wait <= 0:
                break
            housekeeping(now)
            if sleep is None:
                producer.poll(min(wait, _MAX_SLEEP))
            else:
                producer.poll(0)
                sleep(min(wait, _MAX_SLEEP))
            if stop.is_set():
                stopping = True
                simulator.stop()
        _produce(producer, physical[msg.topic], msg, run)
        summary.sent += 1
        if summary.sent % _POLL_EVERY == 0:
            producer.poll(0)
            housekeeping(clock())

    remaining = producer.flush(_FLUSH_TIMEOUT_SECONDS)
    if remaining:
        log.error(
            "%d messages still unacknowledged after %.0f s", remaining, _FLUSH_TIMEOUT_SECONDS
        )
        summary.failed += remaining
    if not ledger.flush():
        summary.ledger_error = ledger.last_error
    summary.ledger_rows = ledger.written
    summary.elapsed_seconds = clock() - started
    ticker.tick(summary, simulator.pending_late, force=True)
    by_topic: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    for (topic, kind), n in run.topic_kind.items():
        by_topic[topic] += n
        by_kind[kind.value] += n
    summary.by_topic = dict(by_topic)
    summary.by_kind = dict(by_kind)
    summary.by_expected_error = dict(run.malformed)
    summary.by_label = dict(run.labels)
    return summary


def _produce(producer: Producer, topic: str, msg: PlannedMessage, run: _Run) -> None:
    """Hand one message to the producer, waiting for queue space if it is full."""
    callback = partial(run.delivered, msg)
    while True:
        try:
            producer.produce(topic, msg.value, msg.key, on_delivery=callback)
            return
        except BufferError:
            producer.poll(0.05)
