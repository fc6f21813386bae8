"""What every Tidelake commit says about itself, in the Delta log's ``commitInfo``.

Each commit Tidelake makes to ``bronze/<table>`` or ``quarantine`` carries one custom-metadata
entry, :data:`COMMIT_METADATA_KEY` (``"tidelake"``), whose value is a JSON object (the
:class:`CommitAnnotation`). It is written in the same atomic commit as the rows and the txn
offsets, so it is exactly as durable as they are, and it survives crashes of every process:

* ``kind``: ``ingest`` (a micro-batch), ``accept_gap`` (an operator accepted lost offsets) or
  ``replay`` (quarantined records moved to bronze by ``tidelake quarantine replay``) or
  ``maintenance`` (compaction, vacuum, the maintenance lease: no rows added, no topic, no
  ranges, so readers filtering by topic never see it; see :mod:`tidelake.maintenance`).
* ``topic`` / ``topic_id``: the physical Kafka topic, and the broker's topic id when the broker
  has one (a re-created topic gets a new id, which is how the engine notices re-creation).
* ``ranges``: per Kafka partition, the offsets ``[first, next)`` this commit accounts for: for
  bronze ingest commits, from the previous stored position to the new one.
* ``skipped``: inclusive offset ranges inside ``ranges`` that the broker never delivered because
  they hold no data record: transaction markers, aborted transactional records, compacted-away
  records. They are not loss; the offsets check counts them as covered.
* ``accepted``: inclusive offset ranges an operator accepted as lost (``tidelake ingest
  --accept-gap``), with ``reason``, ``by`` and ``at`` in ``audit``.
* ``stats``: figures about the rows of this commit (records, bytes, valid, invalid by reason,
  late, ...), for metrics that must survive the process that wrote them.

Readers (the bronze checks, metrics, the replay command) use :func:`read_annotations`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from deltalake import DeltaTable

from tidelake.deltalog import commits_after

log = logging.getLogger(__name__)

COMMIT_METADATA_KEY = "tidelake"
"""The ``commitInfo`` custom-metadata key of every Tidelake commit."""
ANNOTATION_VERSION = 1

CommitKind = Literal["ingest", "accept_gap", "replay", "maintenance"]
Ranges = dict[int, list[tuple[int, int]]]
"""Kafka partition → inclusive ``(first, last)`` offset ranges."""


@dataclass
class CommitAnnotation:
    """The ``tidelake`` entry of one commit's ``commitInfo`` (see the module docstring)."""

    kind: CommitKind
    topic: str
    topic_id: str | None = None
    group: str | None = None
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Partition → ``(first, next)``, ``next`` exclusive."""
    skipped: Ranges = field(default_factory=dict)
    accepted: Ranges = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": ANNOTATION_VERSION,
                "kind": self.kind,
                "topic": self.topic,
                "topic_id": self.topic_id,
                "group": self.group,
                "ranges": {str(p): list(r) for p, r in sorted(self.ranges.items())},
                "skipped": _dump_ranges(self.skipped),
                "accepted": _dump_ranges(self.accepted),
                "audit": self.audit,
                "stats": self.stats,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    def custom_metadata(self) -> dict[str, str]:
        """The ``CommitProperties(custom_metadata=...)`` value carrying this annotation."""
        return {COMMIT_METADATA_KEY: self.to_json()}

    @classmethod
    def from_json(cls, text: str) -> CommitAnnotation:
        d = json.loads(text)
        return cls(
            kind=d["kind"],
            topic=d["topic"],
            topic_id=d.get("topic_id"),
            group=d.get("group"),
            ranges={int(p): (int(r[0]), int(r[1])) for p, r in (d.get("ranges") or {}).items()},
            skipped=_load_ranges(d.get("skipped")),
            accepted=_load_ranges(d.get("accepted")),
            audit=dict(d.get("audit") or {}),
            stats=dict(d.get("stats") or {}),
        )

    @property
    def skipped_offsets(self) -> int:
        return count_offsets(self.skipped)

    @property
    def accepted_offsets(self) -> int:
        return count_offsets(self.accepted)


@dataclass(frozen=True)
class AnnotatedCommit:
    """One commit of a table with its Tidelake annotation."""

    version: int
    timestamp_ms: int | None
    annotation: CommitAnnotation


def parse_commit_info(info: Mapping[str, Any]) -> CommitAnnotation | None:
    """The annotation of one ``commitInfo`` dict (from ``DeltaTable.history()``), if any.

    A commit made by something else (OPTIMIZE, VACUUM, another tool) has none; an annotation
    that does not parse is logged and ignored rather than failing the reader.
    """
    raw = info.get(COMMIT_METADATA_KEY)
    if not raw:
        return None
    try:
        return CommitAnnotation.from_json(str(raw))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("ignoring an unreadable %s annotation: %s", COMMIT_METADATA_KEY, exc)
        return None


def read_annotations(
    table: DeltaTable, since_version: int | None = None, topic: str | None = None
) -> list[AnnotatedCommit]:
    """Annotated commits with a version greater than ``since_version`` (None: all), oldest first.

    Reading is O(commits read): ``since_version`` keeps it to what a batch added. ``topic``
    keeps only commits about that physical topic (quarantine holds every topic's commits).
    """
    # By version through commits_after: history()'s own labels are wrong when commits landed
    # after ``table`` was loaded (the quarantine table takes every topic's commits at once).
    try:
        entries = commits_after(table, -1 if since_version is None else since_version)
    except LookupError:
        if since_version is not None:
            raise
        # Log cleanup removed the oldest commits: read what is left, newest first.
        current = table.version()
        entries = [(current - i, info) for i, info in enumerate(table.history())]
    out: list[AnnotatedCommit] = []
    for version, info in entries:
        annotation = parse_commit_info(info)
        if annotation is None or (topic is not None and annotation.topic != topic):
            continue
        ts = info.get("timestamp")
        out.append(AnnotatedCommit(version, int(ts) if ts is not None else None, annotation))
    out.sort(key=lambda c: c.version)
    return out


def latest_annotation(
    table: DeltaTable, topic: str, kinds: Iterable[CommitKind] = ("ingest",), lookback: int = 50
) -> AnnotatedCommit | None:
    """The newest annotated commit of ``topic`` of one of ``kinds`` among the last ``lookback``.

    Reads the newest commit first and widens only when needed: in steady state the newest commit
    is the topic's own, so one commit file is read.
    """
    wanted = set(kinds)
    current = table.version()
    for depth in dict.fromkeys((1, 10, lookback)):
        for commit in reversed(read_annotations(table, max(-1, current - depth), topic)):
            if commit.annotation.kind in wanted:
                return commit
        if depth >= current + 1:
            break
    return None


def annotations_since_latest(
    table: DeltaTable, topic: str, lookback: int = 50
) -> tuple[AnnotatedCommit | None, list[AnnotatedCommit]]:
    """The newest ``ingest`` commit of ``topic`` and every annotated commit of it made after."""
    current = table.version()
    for depth in dict.fromkeys((1, 10, lookback)):
        commits = read_annotations(table, max(-1, current - depth), topic)
        for i in range(len(commits) - 1, -1, -1):
            if commits[i].annotation.kind == "ingest":
                return commits[i], commits[i + 1 :]
        if depth >= current + 1:
            return None, commits
    return None, read_annotations(table, max(-1, current - lookback), topic)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges (adjacent or overlapping ranges become one)."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def count_offsets(ranges: Ranges) -> int:
    return sum(last - first + 1 for rs in ranges.values() for first, last in rs)


def _dump_ranges(ranges: Ranges) -> dict[str, list[list[int]]]:
    return {str(p): [[a, b] for a, b in rs] for p, rs in sorted(ranges.items()) if rs}


def _load_ranges(raw: Any) -> Ranges:
    return {int(p): [(int(a), int(b)) for a, b in rs] for p, rs in (raw or {}).items()}
