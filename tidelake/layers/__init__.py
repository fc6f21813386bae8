"""The derived layers' lake I/O: silver and windowed gold, refreshed by stale hour.

Each derived table is Delta-partitioned by ``event_date``/``event_hour`` and refreshed by
:func:`tidelake.layers.derive.refresh`: the hours its inputs changed since its durable
watermarks (:mod:`tidelake.layers.lineage`) are recomputed and replaced in one commit.
Importable without Dagster; the assets in ``assets/silver`` and ``assets/gold`` call these.
"""

from tidelake.layers.derive import RefreshConflictError
from tidelake.layers.gold import (
    EVENTS_PER_HOUR_PATH,
    EVENTS_PER_MINUTE_PATH,
    refresh_events_per_hour,
    refresh_events_per_minute,
    stale_gold_hours,
    stale_hourly_gold_hours,
)
from tidelake.layers.lineage import serial_app_id, watermark_app_id
from tidelake.layers.result import HourResult, RefreshResult, StaleHours
from tidelake.layers.silver import refresh_silver, stale_silver_hours

__all__ = [
    "EVENTS_PER_HOUR_PATH",
    "EVENTS_PER_MINUTE_PATH",
    "HourResult",
    "RefreshConflictError",
    "RefreshResult",
    "StaleHours",
    "refresh_events_per_hour",
    "refresh_events_per_minute",
    "refresh_silver",
    "serial_app_id",
    "stale_gold_hours",
    "stale_hourly_gold_hours",
    "stale_silver_hours",
    "watermark_app_id",
]
