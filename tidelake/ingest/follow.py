"""The ingestion worker: drain every topic continuously, one thread per topic, in one process.

``tidelake ingest --follow`` runs :class:`Follower`. Each topic's thread loops: run one batch with
the ordinary :class:`~tidelake.ingest.engine.IngestEngine` (the same exactly-once protocol:
positions in the Delta log, quarantine then bronze, nothing queued behind a failure), run the
per-batch checks over what it added, hand the report to ``on_batch`` (the Dagster wiring records
it as runless events), then wait for new records.

Rules:

* **No process start per batch.** A batch costs its own work: the consume, decode and commits,
  not an interpreter, Dagster and a code location (measured in docs/PERFORMANCE.md).
* **Waiting is cheap.** After a batch that found nothing new, the thread polls the broker's
  watermarks (one ListOffsets request per topic) every ``poll_seconds`` and starts the next batch
  only when one passes bronze's position, or after ``heartbeat_seconds`` anyway (the watermark may
  under-report, and another writer may have moved a position). Idle topics cost neither Delta
  log reads nor S3 requests.
* **Failures back off.** A failed batch, or a batch whose checks failed, starts or extends the
  topic's failure streak; the thread waits ``min(base * 2**(n-1), cap)`` (15 s doubling to 5 min)
  before trying again. ``on_alert`` gets one ``failed`` message at the start of a streak and one
  ``recovered`` message when a batch succeeds after it, as the run-based alert sensors send.
* **Stopping finishes what is in progress.** :meth:`Follower.stop` (SIGTERM/SIGINT in the CLI)
  lets every batch in progress commit and then ends the threads. A killed worker is safe too:
  the next one resumes from the Delta log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidelake.contracts import TopicContract
from tidelake.ingest.engine import IngestEngine
from tidelake.ingest.report import BatchReport
from tidelake.quality.bronze import check_batch
from tidelake.quality.outcome import CheckOutcome

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 15.0
"""Wait after the first failure of a streak; doubles with every further failure."""
BACKOFF_CAP_SECONDS = 300.0
"""Longest wait between attempts of a failing topic."""
POLL_SECONDS = 0.2
"""How often an idle topic's thread asks the broker for its watermarks."""
HEARTBEAT_SECONDS = 30.0
"""An idle topic still runs a batch this often (a watermark may under-report the end)."""
WORKER_JOB_NAME = "ingestion_worker"
"""The ``job_name`` of the worker's alert messages (runs carry their job's name there)."""

OnBatch = Callable[[TopicContract, BatchReport, Mapping[str, CheckOutcome]], None]
OnAlert = Callable[[dict[str, Any]], Any]


@dataclass
class TopicHealth:
    """One topic's failure streak in the worker."""

    streak: int = 0
    retry_at: float = 0.0
    last_error: str | None = None


@dataclass
class FollowStats:
    """Counters of one worker's life, for logs and tests."""

    batches: int = 0
    records: int = 0
    failures: int = 0
    alerts: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)


def backoff_seconds(
    streak: int, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS
) -> float:
    """``min(base * 2**(streak-1), cap)``: the wait after the ``streak``-th failure in a row."""
    return min(base * 2 ** max(streak - 1, 0), cap)


def failure_alert(topic: str, error: str, streak: int) -> dict[str, Any]:
    """The worker's ``failed`` message (Slack-compatible ``text``, the alert sensors' fields)."""
    return {
        "text": f"Tidelake ingestion worker: topic {topic} failed: {error}",
        "event": "failed",
        "job_name": WORKER_JOB_NAME,
        "run_id": None,
        "topic": topic,
        "error": error,
        "streak": streak,
    }


def recovery_alert(topic: str, streak: int) -> dict[str, Any]:
    """The worker's ``recovered`` message, once a batch succeeds after ``streak`` failures."""
    return {
        "text": (
            f"Tidelake ingestion worker: topic {topic} recovered after {streak} failed batch(es)"
        ),
        "event": "recovered",
        "job_name": WORKER_JOB_NAME,
        "run_id": None,
        "topic": topic,
        "error": None,
        "streak": streak,
    }


class Follower:
    """Drains ``contracts`` continuously until :meth:`stop` (see the module docstring).

    Args:
        engine_factory: builds one engine per topic thread (engines hold a fault hook and a
            consumer configuration; they are cheap).
        contracts: the topics to follow.
        on_batch: called after every batch that committed something, with its report and the
            outcomes of the per-batch checks.
        on_alert: called with a failure or recovery message (the webhook).
        run_checks: evaluate the per-batch checks after each batch (on by default).
    """

    def __init__(
        self,
        engine_factory: Callable[[], IngestEngine],
        contracts: Sequence[TopicContract],
        on_batch: OnBatch | None = None,
        on_alert: OnAlert | None = None,
        *,
        run_checks: bool = True,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_cap: float = BACKOFF_CAP_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.engine_factory = engine_factory
        self.contracts = list(contracts)
        self.on_batch = on_batch
        self.on_alert = on_alert
        self.run_checks = run_checks
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.health = {c.name: TopicHealth() for c in self.contracts}
        self.stats = FollowStats()
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Ask every thread to stop after the batch it is running."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Follow every topic until :meth:`stop`; returns when every thread has ended."""
        threads = [
            threading.Thread(target=self._follow, args=(c,), name=f"follow-{c.name}", daemon=True)
            for c in self.contracts
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # -- one topic -----------------------------------------------------------------------------

    def _follow(self, contract: TopicContract) -> None:
        engine = self.engine_factory()
        watcher = _Watermarks(engine, contract)
        try:
            while not self.stopping:
                health = self.health[contract.name]
                wait = health.retry_at - time.monotonic()
                if wait > 0:
                    self._stopping.wait(min(wait, 1.0))
                    continue
                report = self._one_batch(engine, contract)
                if report is not None and not report.records and health.streak == 0:
                    watcher.wait_for_news(
                        report, self._stopping, self.poll_seconds, self.heartbeat_seconds
                    )
        finally:
            watcher.close()

    def _one_batch(self, engine: IngestEngine, contract: TopicContract) -> BatchReport | None:
        try:
            report = engine.ingest_topic(contract)
        except Exception as exc:
            partial: BatchReport | None = getattr(exc, "report", None)
            if partial is not None and partial.commits:
                self._record(contract, partial, {})
            self._failed(contract, f"{type(exc).__name__}: {exc}")
            return None
        outcomes: dict[str, CheckOutcome] = {}
        if self.run_checks and report.commits:
            try:
                outcomes = check_batch(engine.lake, contract, engine.kafka, report)
            except Exception as exc:  # a check that cannot run is a failed batch, not a crash
                self._record(contract, report, {})
                self._failed(contract, f"checks could not run: {type(exc).__name__}: {exc}")
                return None
        if report.commits:
            self._record(contract, report, outcomes)
        failed = [name for name, o in outcomes.items() if not o.passed]
        if failed:
            details = "; ".join(f"{n}: {outcomes[n].description}" for n in failed)
            self._failed(contract, f"blocking check(s) failed: {details}")
            return None
        self._succeeded(contract)
        return report

    def _record(
        self, contract: TopicContract, report: BatchReport, outcomes: Mapping[str, CheckOutcome]
    ) -> None:
        with self._lock:
            self.stats.batches += 1
            self.stats.records += report.records
            self.stats.per_topic[contract.name] = (
                self.stats.per_topic.get(contract.name, 0) + report.records
            )
        if self.on_batch is None:
            return
        try:
            self.on_batch(contract, report, outcomes)
        except Exception:
            # The batch is durable in the lake; a lost report is only a gap in Dagster's view.
            log.exception("%s: could not report the batch to Dagster", contract.name)

    def _failed(self, contract: TopicContract, error: str) -> None:
        health = self.health[contract.name]
        health.streak += 1
        health.last_error = error
        wait = backoff_seconds(health.streak, self.backoff_base, self.backoff_cap)
        health.retry_at = time.monotonic() + wait
        with self._lock:
            self.stats.failures += 1
        log.error(
            "%s: batch failed (%d in a row; retrying in %.0f s): %s",
            contract.name,
            health.streak,
            wait,
            error,
        )
        if health.streak == 1:
            self._alert(failure_alert(contract.name, error, 1))

    def _succeeded(self, contract: TopicContract) -> None:
        health = self.health[contract.name]
        if health.streak:
            log.warning("%s: recovered after %d failed batch(es)", contract.name, health.streak)
            self._alert(recovery_alert(contract.name, health.streak))
        health.streak, health.retry_at, health.last_error = 0, 0.0, None

    def _alert(self, payload: dict[str, Any]) -> None:
        if self.on_alert is None:
            return
        with self._lock:
            self.stats.alerts += 1
        try:
            self.on_alert(payload)
        except Exception:  # an undeliverable alert must not stop ingestion
            log.exception("could not send the alert")


class _Watermarks:
    """Tells an idle topic's thread when the broker has records past bronze's positions."""

    def __init__(self, engine: IngestEngine, contract: TopicContract) -> None:
        self.topic = contract.physical_topic(engine.kafka.topic_prefix)
        self.consumer: Any = None
        self._factory = engine.consumer_factory
        self._config = engine.consumer_config() | {
            "group.id": f"{engine.kafka.consumer_group}-watch"
        }

    def wait_for_news(
        self,
        report: BatchReport,
        stopping: threading.Event,
        poll_seconds: float,
        heartbeat_seconds: float,
    ) -> None:
        """Return once a watermark passes the positions after ``report``, or at the heartbeat."""
        from confluent_kafka import TopicPartition

        positions = {
            p: (report.window.get(p, (0, pos or 0))[1]) for p, pos in report.positions.items()
        }
        if not positions:
            stopping.wait(poll_seconds)
            return
        if self.consumer is None:
            self.consumer = self._factory(self._config)
        deadline = time.monotonic() + heartbeat_seconds
        while not stopping.is_set() and time.monotonic() < deadline:
            try:
                for p, position in positions.items():
                    _, high = self.consumer.get_watermark_offsets(
                        TopicPartition(self.topic, p), timeout=5
                    )
                    if high > position:
                        return
            except Exception as exc:  # the next batch will say what is wrong, loudly
                log.debug("%s: watermark poll failed: %s", self.topic, exc)
                return
            stopping.wait(poll_seconds)

    def close(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                self.consumer.close()
