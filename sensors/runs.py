"""Run-history rules the sensors share: what a failure streak is and when a run ended.

A *stream* is the sequence of runs that succeed or fail together: the runs of one ingestion topic
(tag ``tidelake/ingest_topic``), otherwise the runs of one job. Its *failure streak* is the run
of consecutive FAILURE runs at its newest end. The Kafka sensors back off by it and the alert
sensors post once per streak, so both read history by the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import dagster as dg

STREAK_LOOKBACK_RUNS = 20
"""How many runs of a stream a tick reads, newest first; a longer streak counts as ``20+``."""

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
"""The statuses that make or break a streak; CANCELED and unfinished runs count as neither."""


class FailureStreak(NamedTuple):
    """The consecutive failed runs at the newest end of a stream's history."""

    runs: list[dg.RunRecord]
    """The failed runs, newest first (empty: the stream is not failing)."""
    capped: bool
    """No SUCCESS was found before the look-back ran out: the streak may be longer."""

    @property
    def length(self) -> int:
        return len(self.runs)

    @property
    def label(self) -> str:
        """``"3"``, or ``"20+"`` when the look-back ran out inside the streak."""
        return f"{self.length}+" if self.capped else str(self.length)


def failure_streak(records: Sequence[dg.RunRecord], more: bool = False) -> FailureStreak:
    """The failure streak of ``records`` (one stream, newest first).

    Rule: walk from the newest run; each FAILURE extends the streak, the first SUCCESS ends it,
    and any other status (CANCELED, queued, in progress) is skipped: a cancelled run neither
    breaks a streak nor belongs to it. ``more`` says older records exist beyond the list (the
    query hit its limit), so an unbroken streak is marked ``capped``.
    """
    failed: list[dg.RunRecord] = []
    for record in records:
        status = record.dagster_run.status
        if status == dg.DagsterRunStatus.SUCCESS:
            return FailureStreak(failed, capped=False)
        if status == dg.DagsterRunStatus.FAILURE:
            failed.append(record)
    return FailureStreak(failed, capped=bool(failed) and more)


def ended_at(record: dg.RunRecord) -> float:
    """When the run finished (epoch seconds); its last update when storage has no end time.

    A run that failed before it started (e.g. at launch) may have no ``end_time``.
    """
    if record.end_time is not None:
        return record.end_time
    return record.update_timestamp.timestamp()
