"""What a data check returns (:class:`CheckOutcome`) and the small formatting rules every check's
outcome follows: how many offending items are listed, how counts and windows are written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_LISTED = 20
"""At most this many offending items (duplicates, gaps, failures) are listed in a check outcome."""


@dataclass
class CheckOutcome:
    """The result of one check: whether it passed, a one-line reason, and figures to report."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 (``"1 gap"``, ``"3 gaps"``)."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def window_meta(window: Mapping[int, tuple[int, int]] | None) -> dict[str, list[int]] | None:
    """A window (partition → ``[first, next)``) as metadata: string keys, sorted partitions."""
    if window is None:
        return None
    return {str(p): [first, nxt] for p, (first, nxt) in sorted(window.items())}
