"""The time partitions of the derived layers: hourly for per-event tables, daily for cohorts.

Both start at ``TIDELAKE_PARTITIONS_START`` (00:00 UTC) and include the still-open hour (day)
(``end_offset=1``), so freshness is measured in seconds, not at the end of the hour. Keys use
Dagster's default formats, ``%Y-%m-%d-%H:%M`` and ``%Y-%m-%d``, which
:func:`tidelake.ingest.positions.hour_partition_key` also writes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg

from tidelake.layers.hours import HOUR_KEY_FORMAT
from tidelake.settings import RefreshSettings

DAY_KEY_FORMAT = "%Y-%m-%d"
PARTITIONS_TIMEZONE = "UTC"


def partitions_start(settings: RefreshSettings) -> datetime:
    """00:00 UTC of ``settings.partitions_start``."""
    day = date.fromisoformat(settings.partitions_start)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def hourly_partitions(settings: RefreshSettings) -> dg.HourlyPartitionsDefinition:
    """One partition per UTC hour from ``partitions_start``, the open hour included."""
    return dg.HourlyPartitionsDefinition(
        start_date=partitions_start(settings),
        end_offset=1,
        timezone=PARTITIONS_TIMEZONE,
        fmt=HOUR_KEY_FORMAT,
    )


def daily_partitions(settings: RefreshSettings) -> dg.DailyPartitionsDefinition:
    """One partition per UTC day from ``partitions_start``, the open day included."""
    return dg.DailyPartitionsDefinition(
        start_date=partitions_start(settings),
        end_offset=1,
        timezone=PARTITIONS_TIMEZONE,
        fmt=DAY_KEY_FORMAT,
    )
