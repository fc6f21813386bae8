"""Reading a Delta table's commit history by version, correctly.

deltalake's ``history()`` is the only way to read ``commitInfo`` from Python, and it has a
numbering quirk (below) that every reader of Tidelake's commit annotations must avoid.
"""

from __future__ import annotations

from typing import Any

from deltalake import DeltaTable


class IncompleteHistoryError(OSError, LookupError):
    """The log did not yield every commit asked for: cleaned up, or unreadable right now.

    An ``OSError`` because a storage outage can cause it as well as log cleanup, so the ingest
    engine's retry of transient storage errors covers it; a ``LookupError`` for readers that
    fall back to a full read.
    """


def commits_after(table: DeltaTable, since: int) -> list[tuple[int, dict[str, Any]]]:
    """``(version, commitInfo)`` of the commits in ``(since, table.version()]``, oldest first.

    deltalake 1.6's ``history(limit)`` starts at the newest commit *in storage*, not at the
    loaded version, and numbers its entries down from the loaded version: entries for commits
    made after the table was loaded come first and are mislabelled. Its oldest entry is always
    ``loaded - limit + 1``, so entries are numbered here from the oldest up, and the ones past the
    loaded (pinned) version are dropped.

    Raises:
        IncompleteHistoryError: the log did not yield every commit since ``since`` (log
            cleanup, or a storage outage mid-read).
    """
    version = table.version()
    if since >= version:
        return []
    limit = version - since
    entries = table.history(limit)
    if len(entries) < limit:
        raise IncompleteHistoryError(
            f"the Delta log did not yield commits {since + 1}..{version} (cleaned up or unreadable)"
        )
    lowest = since + 1
    out = []
    for i, info in enumerate(reversed(entries)):
        v = lowest + i
        if v > version:
            break
        out.append((v, info))
    return out
