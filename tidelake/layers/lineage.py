"""Durable lineage of the derived tables: watermarks, derive annotations, touched hours.

Everything a refresh needs to know lives in the Delta logs, so it survives any crash:

* Every commit a refresh makes to a derived table carries (a) the ``tidelake`` annotation
  ``{"kind": "derive", "hours": [...], "inputs": {path: version}, ...}`` in ``commitInfo`` and
  (b) when it leaves nothing stale, one txn *watermark* per input,
  ``Transaction("tidelake:<output>:<input>", <input version read>)`` (:func:`watermark_app_id`).
* The stale hours of an output are the hours named by the input commits newer than its
  watermark: bronze ingest/replay commits name them in ``stats["hours"]``, derive commits in
  ``hours`` (:func:`hours_of_commit`). An input without a watermark is stale in every hour it
  holds; a commit that names no hours but may have changed data (another tool's write, a
  ``DELETE``) makes every hour of the input and of the output stale.
* A *partial* refresh (``hours=`` a subset, leaving stale hours elsewhere) advances no
  watermark; the hours it wrote are fresh as of the input versions in its annotation, and are
  not stale again unless a later input commit touches them (:func:`partial_refreshes`).

Reading is O(commits since the watermark): only that many ``commitInfo`` entries are read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deltalake import DeltaTable

from tidelake.deltalog import commits_after
from tidelake.ingest.annotations import COMMIT_METADATA_KEY
from tidelake.layers.hours import key_of_partition

log = logging.getLogger(__name__)

DERIVE_KIND = "derive"
"""``kind`` of the annotation of every commit to a derived table."""
NO_DATA_OPERATIONS = frozenset(
    {
        "CREATE TABLE",
        "OPTIMIZE",
        "VACUUM START",
        "VACUUM END",
        "ADD COLUMN",
        "ADD CONSTRAINT",
        "DROP CONSTRAINT",
        "ADD FEATURE",
        "SET TBLPROPERTIES",
        "UPDATE FIELD METADATA",
        "UPDATE TABLE METADATA",
    }
)
"""Delta operations that never change which rows a table holds (compaction rewrites files
with the same rows)."""


def watermark_app_id(output: str, input_path: str) -> str:
    """The txn app_id on ``output`` storing the version of ``input_path`` it is derived from."""
    return f"tidelake:{output}:{input_path}"


def serial_app_id(output: str) -> str:
    """The txn app_id bumped by every refresh commit of ``output``.

    It makes two refreshes committing from one snapshot conflict (the second gets
    ``CommitFailedError``) even when they write different hours and advance no watermark.
    """
    return f"tidelake:{output}:serial"


@dataclass(frozen=True)
class DeriveAnnotation:
    """The ``tidelake`` entry of a derived table's commit (see the module docstring)."""

    output: str
    hours: list[str]
    inputs: dict[str, int]
    complete: bool
    rows: int
    hour_rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "kind": DERIVE_KIND,
                "output": self.output,
                "hours": self.hours,
                "inputs": self.inputs,
                "complete": self.complete,
                "stats": {"rows": self.rows, "hour_rows": self.hour_rows},
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    def custom_metadata(self) -> dict[str, str]:
        return {COMMIT_METADATA_KEY: self.to_json()}


Touch = tuple[int, set[str] | None]
"""An input commit's version and the hours it changed (None: it does not say; every hour)."""


def hours_of_commit(info: Mapping[str, Any]) -> set[str] | None:
    """The hours one ``commitInfo`` (an entry of ``DeltaTable.history()``) changed.

    Returns None when the commit may have changed rows but does not say where.
    """
    raw = info.get(COMMIT_METADATA_KEY)
    if raw:
        try:
            note = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (ValueError, TypeError) as exc:
            log.warning(
                "unreadable %s annotation (%s); treating as unknown", COMMIT_METADATA_KEY, exc
            )
            return None
        kind = note.get("kind")
        if kind == DERIVE_KIND:
            return set(note.get("hours") or [])
        if kind == "accept_gap":
            return set()
        stats = note.get("stats") or {}
        if "hours" in stats:
            return set(stats["hours"])
        if stats.get("rows") == 0:
            return set()
        return None
    if info.get("operation") in NO_DATA_OPERATIONS:
        return set()
    metrics = info.get("operationMetrics") or {}
    if metrics.get("num_added_files") == 0 and metrics.get("num_removed_files") == 0:
        return set()
    return None


def touches_since(table: DeltaTable, since: int | None) -> list[Touch]:
    """The changes of ``table`` (at its loaded version) after version ``since``, oldest first.

    ``since`` None (never derived from): every hour the table holds, as of its loaded version.
    ``since`` past the loaded version (the input was re-created) or a log that no longer reaches
    back to ``since``: everything, as of the loaded version.
    """
    version = table.version()
    if since is None:
        return [(version, partition_keys(table))]
    if since > version:
        return [(version, None)]
    try:
        commits = commits_after(table, since)
    except LookupError as exc:
        log.warning("%s; recomputing every hour", exc)
        return [(version, None)]
    return [(v, hours_of_commit(info)) for v, info in commits]


def partial_refreshes(output: DeltaTable) -> list[dict[str, Any]]:
    """Annotations of the derive commits made after the output's last *complete* one.

    A partial refresh (``hours=`` left stale hours elsewhere) advances no watermark, but the
    hours it wrote are fresh as of the input versions it read: the stale-hour computation
    subtracts them, so refreshes of single partitions converge. Reads the output's history
    backwards in growing windows: O(commits since the last complete refresh).
    """
    version = output.version()
    depth = 1
    while True:
        since = max(-1, version - depth)
        try:
            commits = commits_after(output, since)
        except LookupError:
            return []  # cannot tell: assume nothing was refreshed partially (more work, no harm)
        notes = [note for _, info in commits if (note := derive_note(info)) is not None]
        for i in range(len(notes) - 1, -1, -1):
            if notes[i].get("complete"):
                return notes[i + 1 :]
        if since == -1:
            return notes
        depth *= 10


def derive_note(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The derive annotation of one ``commitInfo``, if it has one."""
    raw = info.get(COMMIT_METADATA_KEY)
    if not raw:
        return None
    try:
        note = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError):
        return None
    return note if isinstance(note, dict) and note.get("kind") == DERIVE_KIND else None


def partition_keys(table: DeltaTable) -> set[str]:
    """The hour keys of every partition ``table`` holds rows in (at its loaded version)."""
    return {k for part in table.partitions() if (k := key_of_partition(part)) is not None}


def read_derive_annotations(
    table: DeltaTable, since_version: int | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """``(version, annotation)`` of the derive commits of a derived table after ``since_version``.

    For metrics and checks (which hours were written, from which input versions); oldest first.
    """
    since = -1 if since_version is None else since_version
    return [
        (version, note)
        for version, info in commits_after(table, since)
        if (note := derive_note(info)) is not None
    ]


__all__ = [
    "DERIVE_KIND",
    "DeriveAnnotation",
    "Touch",
    "commits_after",
    "derive_note",
    "hours_of_commit",
    "partial_refreshes",
    "partition_keys",
    "read_derive_annotations",
    "serial_app_id",
    "touches_since",
    "watermark_app_id",
]
