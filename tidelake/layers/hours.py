"""Hour partitions of the derived tables: keys, predicates, the Dagster partition space.

A derived table is Delta-partitioned by ``event_date`` (date32) and ``event_hour`` (int32), the
UTC date and hour of ``event_time``. Its refreshes speak Dagster hourly partition keys
(``%Y-%m-%d-%H:%M``, e.g. ``2026-12-02-01:00``); this module converts between the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta

from tidelake.ingest.positions import hour_partition_key

HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"
"""Dagster's hourly partition key format."""

Hour = tuple[date, int]
"""An hour partition as its ``(event_date, event_hour)`` values."""


def parse_hour(key: str) -> Hour:
    """``"2026-12-02-01:00"`` → ``(date(2026, 12, 2), 1)``.

    Raises:
        ValueError: ``key`` is not an hour partition key (minutes must be ``00``).
    """
    ts = datetime.strptime(key, HOUR_KEY_FORMAT)
    if ts.minute:
        raise ValueError(f"{key!r} is not an hour partition key (minutes must be 00)")
    return ts.date(), ts.hour


def hour_start(key: str) -> datetime:
    """The UTC start of an hour partition key."""
    day, hour = parse_hour(key)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def shifted(key: str, hours: int) -> str:
    """The hour partition key ``hours`` hours after ``key`` (before, when negative)."""
    moved = hour_start(key) + timedelta(hours=hours)
    return key_of(moved.date(), moved.hour)


def key_of(day: date, hour: int) -> str:
    """The hour partition key of an ``event_date``/``event_hour`` pair."""
    return hour_partition_key(day, hour)


def key_of_partition(values: Mapping[str, str | None]) -> str | None:
    """The hour key of one ``DeltaTable.partitions()`` entry, None if it is not an hour."""
    day, hour = values.get("event_date"), values.get("event_hour")
    if not day or hour is None or hour == "":
        return None
    return key_of(date.fromisoformat(day), int(hour))


def in_partition_space(key: str, partitions_start: str, now: datetime | None = None) -> bool:
    """Whether Dagster's hourly partitions include ``key``.

    Rule: the partitions run from ``partitions_start`` 00:00 UTC to the current, still-open hour
    (``end_offset=1``). Hours outside (older events, or event times ahead of our clock, which
    ingestion allows up to ``TIDELAKE_MAX_FUTURE_SECONDS``) are refreshed by every refresh that
    finds them stale, because no partition run could request them.
    """
    start = datetime.combine(date.fromisoformat(partitions_start), datetime.min.time(), UTC)
    current = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return start <= hour_start(key) <= current


def overwrite_predicate(keys: Iterable[str]) -> str:
    """The SQL predicate of exactly the hours ``keys`` (for ``write_deltalake(predicate=...)``).

    Grouped by day so that a backfill of months stays a short predicate: a whole day becomes
    ``event_date = 'D'``, other days ``(event_date = 'D' AND event_hour IN (...))``.
    """
    by_day = _by_day(keys)
    if not by_day:
        raise ValueError("an overwrite predicate needs at least one hour")
    terms = []
    for day, hours in sorted(by_day.items()):
        if len(hours) == 24:
            terms.append(f"(event_date = '{day.isoformat()}')")
        elif len(hours) == 1:
            terms.append(f"(event_date = '{day.isoformat()}' AND event_hour = {hours[0]})")
        else:
            listed = ", ".join(str(h) for h in hours)
            terms.append(f"(event_date = '{day.isoformat()}' AND event_hour IN ({listed}))")
    return " OR ".join(terms)


def pruning_filters(keys: Iterable[str]) -> list[list[tuple[str, str, object]]]:
    """Tuple filters (DNF) selecting exactly the files of the hours ``keys``, for reading."""
    return [
        [("event_date", "=", day.isoformat()), ("event_hour", "in", hours)]
        for day, hours in sorted(_by_day(keys).items())
    ]


def _by_day(keys: Iterable[str]) -> dict[date, list[int]]:
    out: dict[date, set[int]] = {}
    for key in keys:
        day, hour = parse_hour(key)
        out.setdefault(day, set()).add(hour)
    return {d: sorted(hs) for d, hs in out.items()}


__all__ = [
    "HOUR_KEY_FORMAT",
    "Hour",
    "hour_start",
    "in_partition_space",
    "key_of",
    "key_of_partition",
    "overwrite_predicate",
    "parse_hour",
    "pruning_filters",
]
