"""Errors of the ingestion engine. Each message names what is wrong and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidelake.ingest.report import BatchReport


class IngestError(RuntimeError):
    """Ingestion cannot proceed (missing topic, broker error); the message says why.

    ``report`` is set when the batch committed something before it stopped (e.g. the healthy
    partitions of a topic with one partition out of range), so callers can still show it.
    """

    report: BatchReport | None = None


class BatchAborted(IngestError):
    """An earlier step of this batch failed; this piece was not decoded or committed."""


@dataclass(frozen=True)
class RangeProblem:
    """A stored position the broker can no longer serve.

    Attributes:
        partition: Kafka partition.
        position: bronze's stored next offset.
        low: the broker's first retained offset.
        high: the broker's end of log (as far as it could be established).
        kind: ``expired`` (records between position and low were deleted by retention) or
            ``past_end`` (the position is beyond the end of the log: the topic was re-created
            or truncated).
    """

    partition: int
    position: int
    low: int
    high: int
    kind: str

    def sentence(self) -> str:
        if self.kind == "expired":
            return (
                f"partition {self.partition}: stored position {self.position} is below the "
                f"first retained offset {self.low}; offsets {self.position}-{self.low - 1} "
                f"were deleted by retention before they were ingested"
            )
        return (
            f"partition {self.partition}: stored position {self.position} is past the end of "
            f"the log ({self.high}); the topic was re-created or truncated"
        )


class OffsetRangeError(IngestError):
    """Stored positions lie outside the broker's retained range: never skipped silently.

    The other partitions of the batch were ingested (``report``); these were not touched.
    """

    def __init__(self, topic: str, problems: list[RangeProblem]) -> None:
        self.topic = topic
        self.problems = problems
        fixes = []
        if any(p.kind == "expired" for p in problems):
            fixes.append(
                "to accept the loss of expired records and resume at the first retained "
                "offset, run `tidelake ingest --accept-gap "
                + " ".join(
                    f"{topic}:{p.partition}:{p.low}" for p in problems if p.kind == "expired"
                )
                + ' --reason "..."` (recorded in the Delta log)'
            )
        if any(p.kind == "past_end" for p in problems):
            fixes.append(
                "a re-created topic repeats offsets bronze already holds: move "
                "bronze's table aside (or use a new TIDELAKE_TOPIC_PREFIX) before ingesting it"
            )
        super().__init__(
            f"{topic}: positions outside the broker's range: "
            + "; ".join(p.sentence() for p in problems)
            + ". Nothing was skipped. "
            + "; ".join(fixes)
        )


class TopicRecreatedError(IngestError):
    """The broker's topic id differs from the one bronze's positions were recorded against."""

    def __init__(self, topic: str, stored_id: str, current_id: str, version: int) -> None:
        self.topic = topic
        self.stored_id = stored_id
        self.current_id = current_id
        super().__init__(
            f"{topic}: the topic was deleted and re-created (topic id {stored_id}, recorded in "
            f"bronze commit {version}, is now {current_id}); bronze's stored positions refer to "
            f"the old topic, whose offsets the new one repeats. Nothing was read. Move bronze's "
            f"table aside (or use a new TIDELAKE_TOPIC_PREFIX) to ingest the new topic."
        )
