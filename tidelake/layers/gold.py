"""``gold/events_per_minute`` and ``gold/events_per_hour``: windowed counts, hour by hour.

* ``gold/events_per_minute`` is derived from the six ``silver/<table>`` tables: an hour of it
  is :func:`tidelake.transform.windows.events_per_minute` over that hour of every silver table.
* ``gold/events_per_hour`` is derived from ``gold/events_per_minute``: an hour of it is the sum
  of that hour's minutes (:func:`tidelake.transform.windows.events_per_hour`).

Both are Delta-partitioned by ``event_date``/``event_hour`` of ``window_start`` and refreshed
like silver (:mod:`tidelake.layers.derive`): only the hours whose inputs changed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import polars as pl
import pyarrow as pa

from tidelake.contracts import TOPICS, TopicContract
from tidelake.lake import Lake
from tidelake.layers.derive import Built, Derivation, refresh, stale_hours
from tidelake.layers.hours import key_of
from tidelake.layers.result import RefreshResult, StaleHours
from tidelake.settings import RefreshSettings
from tidelake.transform.windows import (
    EVENTS_PER_HOUR_SCHEMA,
    EVENTS_PER_MINUTE_SCHEMA,
    events_per_hour,
    events_per_minute,
    to_arrow,
)

EVENTS_PER_MINUTE_PATH = "gold/events_per_minute"
EVENTS_PER_HOUR_PATH = "gold/events_per_hour"
SILVER_WINDOW_COLUMNS: tuple[str, ...] = (
    "event_type",
    "event_time",
    "_ingested_at",
    "_deliveries",
    "event_date",
    "event_hour",
)
"""The silver columns :func:`tidelake.transform.events_per_minute` reads."""
GOLD_DETAILS: tuple[str, ...] = ("events", "duplicates", "late_events")
"""``HourResult.details`` keys of a gold refresh (sums over the hour)."""


def events_per_minute_derivation(
    contracts: Sequence[TopicContract] | None = None, late_after_seconds: float = 30.0
) -> Derivation:
    """The derivation silver (every topic of ``contracts``) → ``gold/events_per_minute``."""
    chosen = list(TOPICS.values()) if contracts is None else list(contracts)
    topics = {c.silver_path: c.name for c in chosen}

    def build(inputs: Mapping[str, pa.Table], keys: Sequence[str]) -> Built:
        frames = [
            events_per_minute(pl.DataFrame(rows), topics[path], late_after_seconds)
            for path, rows in inputs.items()
            if rows.num_rows
        ]
        return _built(frames, EVENTS_PER_MINUTE_SCHEMA, keys)

    return Derivation(
        output=EVENTS_PER_MINUTE_PATH,
        inputs=tuple(topics),
        schema=EVENTS_PER_MINUTE_SCHEMA,
        description="Events per (topic, event_type, minute of event_time), late, duplicates.",
        build=build,
        # Reading only what the windows use keeps a day of silver to a few columns in memory.
        columns=SILVER_WINDOW_COLUMNS,
    )


def events_per_hour_derivation() -> Derivation:
    """The derivation ``gold/events_per_minute`` → ``gold/events_per_hour``."""

    def build(inputs: Mapping[str, pa.Table], keys: Sequence[str]) -> Built:
        rows = inputs.get(EVENTS_PER_MINUTE_PATH)
        frames = [events_per_hour(pl.DataFrame(rows))] if rows is not None and rows.num_rows else []
        return _built(frames, EVENTS_PER_HOUR_SCHEMA, keys)

    return Derivation(
        output=EVENTS_PER_HOUR_PATH,
        inputs=(EVENTS_PER_MINUTE_PATH,),
        schema=EVENTS_PER_HOUR_SCHEMA,
        description="Events per (topic, event_type, hour of event_time), late, duplicates.",
        build=build,
    )


def _built(frames: list[pl.DataFrame], schema: pa.Schema, keys: Sequence[str]) -> Built:
    """Concatenated window rows and their per-hour sums."""
    details = {k: dict.fromkeys(GOLD_DETAILS, 0) for k in keys}
    frames = [f for f in frames if f.height]
    if not frames:
        return Built(rows=schema.empty_table(), details=details)
    frame = pl.concat(frames)
    sums = frame.group_by("event_date", "event_hour").agg(pl.col(c).sum() for c in GOLD_DETAILS)
    for row in sums.iter_rows(named=True):
        details[key_of(row["event_date"], row["event_hour"])] = {
            c: int(row[c]) for c in GOLD_DETAILS
        }
    return Built(rows=to_arrow(frame, schema), details=details)


def stale_gold_hours(lake: Lake, contracts: Sequence[TopicContract]) -> StaleHours:
    """Hours of ``gold/events_per_minute`` whose silver hours changed since its watermarks."""
    return stale_hours(lake, events_per_minute_derivation(contracts))


def refresh_events_per_minute(
    lake: Lake,
    contracts: Sequence[TopicContract],
    hours: Collection[str] | None = None,
    *,
    settings: RefreshSettings,
    now: datetime | None = None,
    max_hours: int | None = None,
) -> RefreshResult:
    """Recompute the stale hours of ``gold/events_per_minute`` from silver, in one commit.

    Every silver table of ``contracts`` that exists is read for the hours refreshed (an hour
    holds every topic's minutes). Details per hour: ``events``, ``duplicates``, ``late_events``.
    """
    derivation = events_per_minute_derivation(contracts, settings.late_after_seconds)
    return refresh(lake, derivation, hours, settings, now, max_hours)


def stale_hourly_gold_hours(lake: Lake) -> StaleHours:
    """Hours of ``gold/events_per_hour`` whose minutes changed since its watermark."""
    return stale_hours(lake, events_per_hour_derivation())


def refresh_events_per_hour(
    lake: Lake,
    hours: Collection[str] | None = None,
    *,
    settings: RefreshSettings,
    now: datetime | None = None,
    max_hours: int | None = None,
) -> RefreshResult:
    """Recompute the stale hours of ``gold/events_per_hour`` from the minutes, in one commit."""
    return refresh(lake, events_per_hour_derivation(), hours, settings, now, max_hours)


__all__ = [
    "EVENTS_PER_HOUR_PATH",
    "EVENTS_PER_MINUTE_PATH",
    "GOLD_DETAILS",
    "events_per_hour_derivation",
    "events_per_minute_derivation",
    "refresh_events_per_hour",
    "refresh_events_per_minute",
    "stale_gold_hours",
    "stale_hourly_gold_hours",
]
