"""Pure Polars transforms of the derived layers (no I/O, no Dagster).

* :mod:`tidelake.transform.silver`: bronze deliveries → each logical event once.
* :mod:`tidelake.transform.windows`: silver → per-minute and per-hour event counts.
"""

from tidelake.transform.silver import dedupe_first_delivery, late_expr
from tidelake.transform.windows import (
    EVENTS_PER_HOUR_SCHEMA,
    EVENTS_PER_MINUTE_SCHEMA,
    WINDOW_COLUMNS,
    events_per_hour,
    events_per_minute,
    to_arrow,
)

__all__ = [
    "EVENTS_PER_HOUR_SCHEMA",
    "EVENTS_PER_MINUTE_SCHEMA",
    "WINDOW_COLUMNS",
    "dedupe_first_delivery",
    "events_per_hour",
    "events_per_minute",
    "late_expr",
    "to_arrow",
]
