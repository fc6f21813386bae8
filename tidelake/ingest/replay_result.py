"""What a quarantine replay did: per-topic counts, the overall result and its rendering.

:class:`TopicReplay` and :class:`ReplayResult` are what
:func:`~tidelake.ingest.replay.replay_quarantine` returns and ``tidelake quarantine replay`` prints
(as text with :meth:`ReplayResult.render`, as JSON with :meth:`ReplayResult.to_dict`);
:class:`ReplayUsageError` is the request it refuses. :data:`VALID` is the outcome name, beside the
quarantine reasons, of a row that passes the current contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

VALID = "valid"
"""Outcome name of a row that passes the current contract."""


class ReplayUsageError(ValueError):
    """The request names something that does not exist (a topic, a reason); says what does."""


@dataclass
class TopicReplay:
    """What a replay did (or, in a dry run, would do) for one topic.

    Attributes:
        topic: logical topic name.
        physical_topic: Kafka topic name, with the environment prefix.
        examined: quarantine rows re-validated (eligible rows matching the reason filter).
        moved: rows appended to bronze (dry run: that would be).
        moved_by_reason: original quarantine reason → rows moved.
        still_failing: original reason → current reason → rows that stay in quarantine.
        recovered: coordinates found in both tables and deleted from quarantine (step 0, plus
            now-valid rows another writer had already put in bronze).
        in_flight: quarantine rows at or past bronze's stored position, left alone.
        partitions_touched: Dagster hourly partition keys of the moved rows' ``event_time``.
        bronze_version, quarantine_version: table versions when the topic was done.
        commits: Delta commits made.
        error: why the topic failed, if it did (other topics are still processed).
    """

    topic: str
    physical_topic: str
    examined: int = 0
    moved: int = 0
    moved_by_reason: dict[str, int] = field(default_factory=dict)
    still_failing: dict[str, dict[str, int]] = field(default_factory=dict)
    recovered: int = 0
    in_flight: int = 0
    partitions_touched: list[str] = field(default_factory=list)
    bronze_version: int | None = None
    quarantine_version: int | None = None
    commits: int = 0
    error: str | None = None

    @property
    def still_failing_total(self) -> int:
        return sum(n for by_now in self.still_failing.values() for n in by_now.values())

    def transitions(self) -> list[tuple[str, str, int]]:
        """``(original reason, current outcome, rows)``; the outcome is ``valid`` or a reason."""
        out = [(r, VALID, n) for r, n in self.moved_by_reason.items()]
        out += [
            (r, now, n) for r, by_now in self.still_failing.items() for now, n in by_now.items()
        ]
        return sorted(out)


@dataclass
class ReplayResult:
    """The outcome of :func:`replay_quarantine`, one entry per topic examined."""

    dry_run: bool
    reason: str | None
    topics: list[TopicReplay] = field(default_factory=list)
    quarantine_exists: bool = True

    @property
    def moved(self) -> int:
        return sum(t.moved for t in self.topics)

    @property
    def failed(self) -> list[TopicReplay]:
        return [t for t in self.topics if t.error is not None]

    @property
    def partitions_touched(self) -> list[str]:
        """Every hour partition a moved row landed in, across topics (to refresh downstream)."""
        return sorted({k for t in self.topics for k in t.partitions_touched})

    @property
    def exit_code(self) -> int:
        """0 when every topic was processed (even if nothing moved), 1 when one failed."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "reason": self.reason,
            "quarantine_exists": self.quarantine_exists,
            "moved": self.moved,
            "failed_topics": [t.topic for t in self.failed],
            "partitions_touched": self.partitions_touched,
            "topics": [asdict(t) for t in self.topics],
        }

    def render(self) -> str:
        """Human-readable lines: per topic the totals, then each reason's outcome."""
        if not self.quarantine_exists:
            return "quarantine table does not exist yet: nothing to replay\n"
        verb = "would move" if self.dry_run else "moved"
        lines = []
        for t in self.topics:
            head = (
                f"{t.topic}: {verb} {t.moved} to bronze, {t.still_failing_total} still failing, "
                f"{'would recover' if self.dry_run else 'recovered'} {t.recovered}"
            )
            if t.in_flight:
                head += f", {t.in_flight} in flight (at or past bronze's position; left alone)"
            if not self.dry_run:
                head += f" (bronze v{t.bronze_version}, quarantine v{t.quarantine_version})"
            lines.append(head)
            for before, now, n in t.transitions():
                outcome = (
                    "now valid"
                    if now == VALID
                    else (f"still {now}" if now == before else f"now {now}")
                )
                lines.append(f"  {before} → {outcome}: {n}")
            if t.partitions_touched:
                lines.append(f"  hour partitions touched: {', '.join(t.partitions_touched)}")
            if t.error:
                lines.append(f"  FAILED: {t.error}")
        if not self.topics:
            lines.append("no topics selected")
        return "\n".join(lines) + "\n"


__all__ = ["VALID", "ReplayResult", "ReplayUsageError", "TopicReplay"]
