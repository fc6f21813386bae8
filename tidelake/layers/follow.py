"""The worker's refresh loop: silver and gold refreshed in the ingestion worker's process.

The ingestion worker (:mod:`tidelake.ingest.follow`) calls :meth:`RefreshLoop.notify` after every
batch that committed bronze rows; one thread runs ``refresh_once`` (one round: every stale silver
hour, then gold) soon after. Why in the worker: a Dagster run per refresh costs seconds to launch
and more to load the code location (docs/PERFORMANCE.md, gold freshness), far above the few
hundred milliseconds a small refresh takes.

Rules:

* **Coalesce.** A round starts ``debounce_seconds`` after the first notification it serves, so
  six topics' batches landing together cost one round, not six; notifications during a round
  make exactly one more round after it.
* **Nothing is lost by coalescing or by a crash.** A round refreshes what the Delta logs say is
  stale (:mod:`tidelake.layers.lineage`), not what it was told: a missed notification only
  delays a refresh until the next one or the heartbeat (``heartbeat_seconds``, which also picks
  up bronze written by other processes: a backfill, ``tidelake ingest --once``).
* **More than one round's worth** (``refresh_once`` returns True: it capped the hours of a
  round) → the next round starts at once.
* **Failures back off** by the ingestion worker's rule
  (:func:`tidelake.ingest.follow.backoff_seconds`), with one ``failed`` alert at the start of a
  streak and one ``recovered`` alert after it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidelake.ingest.follow import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    WORKER_JOB_NAME,
    backoff_seconds,
)

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.5
"""Wait after a notification before a round, so batches landing together share it."""
HEARTBEAT_SECONDS = 30.0
"""A round runs at least this often (bronze written by other processes, missed notifications)."""
REFRESH_STREAM = "derived"
"""The ``topic`` field of the loop's alerts: the refresh is not one topic's."""


class RefreshRoundError(RuntimeError):
    """A round that could not finish (a blocking check failed, an input could not be read)."""


@dataclass
class LoopStats:
    """Counters of one loop's life, for logs and tests."""

    rounds: int = 0
    notifications: int = 0
    failures: int = 0
    streak: int = 0
    alerts: int = 0


class RefreshLoop:
    """Runs ``refresh_once`` after notifications, coalescing them (see the module docstring).

    Args:
        refresh_once: one round; True when stale hours were left for another round.
        on_alert: receives ``failed``/``recovered`` messages (the worker's webhook sender).
    """

    def __init__(
        self,
        refresh_once: Callable[[], bool],
        on_alert: Callable[[dict[str, Any]], Any] | None = None,
        *,
        debounce_seconds: float = DEBOUNCE_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_cap: float = BACKOFF_CAP_SECONDS,
    ) -> None:
        self.refresh_once = refresh_once
        self.on_alert = on_alert
        self.debounce_seconds = debounce_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = LoopStats()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        """Bronze changed: run a round soon (cheap; safe from any thread)."""
        self.stats.notifications += 1
        self._wake.set()

    def stop(self) -> None:
        """End the loop after the round in progress."""
        self._stopping.set()
        self._wake.set()

    def start(self) -> RefreshLoop:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="refresh-derived", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Loop until :meth:`stop`; a round in progress always finishes."""
        again = True  # a first round at start: whatever was left stale before this process
        while not self._stopping.is_set():
            if not again:
                self._wake.wait(self.heartbeat_seconds)
                if self._stopping.is_set():
                    break
                # Let the batches landing together arrive before the round reads the logs.
                self._stopping.wait(self.debounce_seconds)
            self._wake.clear()
            again = self._round()
            if self.stats.streak:
                wait = backoff_seconds(self.stats.streak, self.backoff_base, self.backoff_cap)
                self._stopping.wait(wait)
                again = True

    def _round(self) -> bool:
        started = time.monotonic()
        try:
            more = self.refresh_once()
        except Exception as exc:  # a failed round backs off; the stale hours stay stale
            self.stats.failures += 1
            self.stats.streak += 1
            error = f"{type(exc).__name__}: {exc}"
            log.error(
                "derived refresh failed (%d in a row): %s", self.stats.streak, error, exc_info=True
            )
            if self.stats.streak == 1:
                self._alert(failure_alert(error))
            return True
        self.stats.rounds += 1
        log.debug("derived refresh round took %.2f s", time.monotonic() - started)
        if self.stats.streak:
            log.warning("derived refresh recovered after %d failed round(s)", self.stats.streak)
            self._alert(recovery_alert(self.stats.streak))
            self.stats.streak = 0
        return more

    def _alert(self, payload: dict[str, Any]) -> None:
        if self.on_alert is None:
            return
        self.stats.alerts += 1
        try:
            self.on_alert(payload)
        except Exception:  # an undeliverable alert must not stop the refresh
            log.exception("could not send the alert")


def failure_alert(error: str) -> dict[str, Any]:
    """The loop's ``failed`` message (the same fields as the ingestion worker's)."""
    return {
        "text": f"Tidelake ingestion worker: the silver/gold refresh failed: {error}",
        "event": "failed",
        "job_name": WORKER_JOB_NAME,
        "run_id": None,
        "topic": REFRESH_STREAM,
        "error": error,
        "streak": 1,
    }


def recovery_alert(streak: int) -> dict[str, Any]:
    """The loop's ``recovered`` message after ``streak`` failed rounds."""
    return {
        "text": (
            f"Tidelake ingestion worker: the silver/gold refresh recovered after {streak} "
            "failed round(s)"
        ),
        "event": "recovered",
        "job_name": WORKER_JOB_NAME,
        "run_id": None,
        "topic": REFRESH_STREAM,
        "error": None,
        "streak": streak,
    }
