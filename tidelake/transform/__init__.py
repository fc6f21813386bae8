"""Pure Polars transforms of the derived layers (no I/O, no Dagster).

* :mod:`tidelake.transform.silver`: bronze deliveries → each logical event once.
* :mod:`tidelake.transform.windows`: silver → per-minute and per-hour event counts.
* :mod:`tidelake.transform.fraud` (rules in ``fraud_rules``/``fraud_sequence``): the fraud flags.
* :mod:`tidelake.transform.anomalies` (``robust_zscore``), ``anomaly_model`` (the learned
  ``isolation_forest``), ``anomaly_scoring`` (precision/recall against labelled readings).
* :mod:`tidelake.transform.top_products`: the most viewed products of a window as of a time.
* :mod:`tidelake.transform.cohorts`: daily cohort retention (bounded and "on or after").

The analytics modules are imported by their own names, not re-exported here.
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
