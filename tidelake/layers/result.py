"""What a refresh of a derived table did, and what is stale."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HourResult:
    """One hour partition a refresh (re)wrote.

    Attributes:
        hour: the hour partition key, e.g. ``2026-12-02-01:00``.
        rows: rows the output now holds for that hour (0: the hour was emptied).
        details: figures of the hour; silver: ``bronze_rows``, ``bronze_event_ids``,
            ``duplicates_removed``, ``late``; gold: ``events``, ``duplicates``, ``late_events``.
    """

    hour: str
    rows: int
    details: dict[str, int] = field(default_factory=dict)


@dataclass
class RefreshResult:
    """The outcome of one refresh of a derived table (at most one Delta commit).

    Attributes:
        output: the output table path, e.g. ``silver/shop_clicks``.
        hours: the hours (re)written, sorted.
        version: the output's Delta version after the refresh; None when nothing was written.
        input_versions: input path → the version that was read (and stale hours computed at).
        complete: True when no stale hour is left; then the output's watermarks were advanced to
            ``input_versions`` (or already were).
    """

    output: str
    hours: list[HourResult]
    version: int | None
    input_versions: dict[str, int]
    complete: bool

    @property
    def rows(self) -> int:
        """Rows written in total over :attr:`hours`."""
        return sum(h.rows for h in self.hours)

    @property
    def hour_keys(self) -> list[str]:
        return [h.hour for h in self.hours]


@dataclass
class StaleHours:
    """The hours of a derived table whose inputs changed since its watermark.

    Attributes:
        hours: sorted hour partition keys needing a refresh.
        input_versions: the current versions of the inputs (those that exist).
    """

    hours: list[str]
    input_versions: dict[str, int]


__all__ = ["HourResult", "RefreshResult", "StaleHours"]
