"""The reconciliation report: what ``tidelake validate`` found, as frozen dataclasses.

A :class:`ReconciliationReport` holds one :class:`MinuteRow` per (topic, minute of
``event_time``), one :class:`TopicSummary` per topic (the sums of its minutes plus the quarantine
and coverage results), the quarantine :class:`ReasonCount`\\ s and a sample of
:class:`RecordIssue`\\ s. ``ok`` is the verdict; ``to_dict``/``to_json`` and ``render`` present it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

DEFAULT_SAMPLE_SIZE = 10

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2


class ScopeError(ValueError):
    """The validation cannot run as asked (no ledger, unknown topic or run, bad window)."""


@dataclass(frozen=True)
class Scope:
    """What a reconciliation covers.

    Args:
        lake_uri: the lake root that was read (empty for in-memory comparisons).
        topic_prefix: environment prefix of the physical Kafka topic names.
        run_id: only this simulator run's ledger rows, or all runs.
        topics: logical topics compared.
        since: inclusive lower bound on ``event_time`` (UTC), or unbounded.
        until: exclusive upper bound on ``event_time`` (UTC), or unbounded.
    """

    lake_uri: str = ""
    topic_prefix: str = ""
    run_id: str | None = None
    topics: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class MinuteRow:
    """One (topic, minute of ``event_time``) of the comparison.

    ``landed`` counts distinct bronze ``event_id``s in scope: the produced ones that arrived plus
    the unexpected ones, never events attributed to other runs (``other_runs``).
    ``duplicates_seen`` is bronze rows beyond the first per ``event_id`` (what silver removes).

    The ``silver_*`` columns are ``None`` while the topic's silver table does not exist:
    ``silver_distinct`` distinct silver ``event_id``s (silver events), ``silver_duplicates`` silver
    rows beyond the first per ``event_id``, ``silver_duplicate_ids`` ``event_id``s with more than
    one silver row, ``silver_missing`` produced ids absent from silver, ``silver_extra`` silver ids
    the ledger did not produce in this minute, ``silver_not_in_bronze``/``bronze_not_in_silver``
    the difference between silver and the distinct bronze ids.
    """

    topic: str
    minute: datetime
    produced: int
    landed: int
    missing: int
    unexpected: int
    ledger_duplicates: int
    duplicates_seen: int
    late: int
    bronze_rows: int
    other_runs: int = 0
    silver_distinct: int | None = None
    silver_duplicates: int | None = None
    missing_sample: tuple[str, ...] = ()
    unexpected_sample: tuple[str, ...] = ()
    silver_missing: int | None = None
    silver_extra: int | None = None
    silver_duplicate_ids: int | None = None
    silver_not_in_bronze: int | None = None
    bronze_not_in_silver: int | None = None

    @property
    def silver_events(self) -> int | None:
        """Distinct silver ``event_id``s (the same figure as ``silver_distinct``)."""
        return self.silver_distinct

    @property
    def silver_ok(self) -> bool:
        """Silver (when built) holds each produced and each landed ``event_id`` exactly once."""
        if self.silver_distinct is None:
            return True
        return not any(
            (
                self.silver_missing,
                self.silver_extra,
                self.silver_duplicates,
                self.silver_not_in_bronze,
                self.bronze_not_in_silver,
            )
        )

    @property
    def ok(self) -> bool:
        """Nothing missing, nothing unexpected, and silver (if built) agrees.

        Duplicates are not a mismatch: the producer re-sends, bronze keeps every delivery and
        silver removes them; lost or doubled *records* are caught by offset coverage instead.
        """
        return self.missing == 0 and self.unexpected == 0 and self.silver_ok

    @property
    def status(self) -> str:
        return "OK" if self.ok else "MISMATCH"


@dataclass(frozen=True)
class ReasonCount:
    """Quarantined records of one (topic, reason): expected by the ledger vs found in the lake."""

    topic: str
    reason: str
    expected: int
    quarantined: int

    @property
    def ok(self) -> bool:
        return self.expected == self.quarantined


@dataclass(frozen=True)
class RecordIssue:
    """One Kafka record the lake got wrong.

    ``problem`` is one of: ``not_quarantined`` (a malformed message is not in quarantine),
    ``wrong_reason`` (quarantined with another reason), ``unexpected_quarantine`` (a record the
    ledger calls valid, or does not know, is in quarantine), ``lost`` (a ledger offset is in neither
    bronze nor quarantine), ``doubled`` (a ledger offset appears more than once across them).
    """

    topic: str
    partition: int
    offset: int
    problem: str
    expected_error: str | None = None
    actual_error: str | None = None
    bronze_rows: int = 0
    quarantine_rows: int = 0


@dataclass(frozen=True)
class TopicSummary:
    """Totals of one topic over the scope, plus its quarantine and coverage results.

    The ``silver_*`` figures are the sums of the topic's minute rows, ``None`` while the topic's
    silver table is not built; ``silver_events`` equals ``silver_distinct`` (kept for the JSON
    format's readers).
    """

    topic: str
    minutes: int
    mismatched_minutes: int
    produced: int
    landed: int
    missing: int
    unexpected: int
    ledger_duplicates: int
    duplicates_seen: int
    late: int
    other_runs: int
    malformed_expected: int
    quarantined: int
    not_quarantined: int
    wrong_reason: int
    unexpected_quarantine: int
    ledger_offsets: int
    lost_offsets: int
    doubled_offsets: int
    reason_mismatches: int
    silver_distinct: int | None = None
    missing_sample: tuple[str, ...] = ()
    unexpected_sample: tuple[str, ...] = ()
    silver_events: int | None = None
    silver_missing: int | None = None
    silver_extra: int | None = None
    silver_duplicate_ids: int | None = None
    silver_not_in_bronze: int | None = None
    bronze_not_in_silver: int | None = None
    silver_missing_sample: tuple[str, ...] = ()
    silver_extra_sample: tuple[str, ...] = ()

    @property
    def silver_built(self) -> bool:
        return self.silver_events is not None

    @property
    def silver_ok(self) -> bool:
        """Silver is not built, or holds each produced and landed event exactly once."""
        return not any(
            (
                self.silver_missing,
                self.silver_extra,
                self.silver_duplicate_ids,
                self.silver_not_in_bronze,
                self.bronze_not_in_silver,
            )
        )

    @property
    def ok(self) -> bool:
        return (
            self.mismatched_minutes == 0
            and self.not_quarantined == 0
            and self.wrong_reason == 0
            and self.unexpected_quarantine == 0
            and self.lost_offsets == 0
            and self.doubled_offsets == 0
            and self.reason_mismatches == 0
            and self.silver_ok
        )

    @property
    def status(self) -> str:
        return "OK" if self.ok else "MISMATCH"


@dataclass(frozen=True)
class ReconciliationReport:
    """The whole comparison. ``ok`` is the verdict; ``render()`` and ``to_dict()`` present it.

    ``silver_checked`` is True when at least one topic's silver table is built;
    ``silver_topics`` names those topics.
    """

    scope: Scope
    topics: tuple[TopicSummary, ...]
    minutes: tuple[MinuteRow, ...]
    reasons: tuple[ReasonCount, ...]
    record_issues: tuple[RecordIssue, ...] = ()
    sample_size: int = DEFAULT_SAMPLE_SIZE
    silver_checked: bool = False
    silver_topics: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every topic, minute and quarantine reason matches (silver included)."""
        return all(t.ok for t in self.topics) and all(r.ok for r in self.reasons)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_MISMATCH

    @property
    def mismatched_minutes(self) -> tuple[MinuteRow, ...]:
        return tuple(m for m in self.minutes if not m.ok)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as RFC 3339 strings) including derived ``ok``/``status``."""

        def row(obj: Any) -> dict[str, Any]:
            d = asdict(obj)
            if hasattr(obj, "ok"):
                d["ok"] = obj.ok
            return d

        out: dict[str, Any] = {
            "ok": self.ok,
            "status": "OK" if self.ok else "MISMATCH",
            "scope": asdict(self.scope),
            "sample_size": self.sample_size,
            "silver_checked": self.silver_checked,
            "silver_topics": list(self.silver_topics),
            "topics": [row(t) for t in self.topics],
            "quarantine_reasons": [row(r) for r in self.reasons],
            "record_issues": [asdict(i) for i in self.record_issues],
            "minutes": [row(m) for m in self.minutes],
        }
        result: dict[str, Any] = _jsonable(out)
        return result

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def render(self, per_minute: bool = False, *, color: bool = False, width: int = 0) -> str:
        """The text report: topic summary, silver, quarantine, record issues, minutes, verdict.

        Args:
            per_minute: show every minute; by default only mismatching minutes are listed.
            color: emit ANSI styles (only for a terminal); plain text otherwise.
            width: console width for the tables; 0 lays them out at their natural width.
        """
        # Imported here: the renderer depends on this module, not the other way round.
        from tidelake.quality.reconcile.render import render_report

        return render_report(self, per_minute=per_minute, color=color, width=width)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
