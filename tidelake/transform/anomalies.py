"""Gold ``sensor_anomalies``: readings that do not fit their device's and metric's recent past.

One row per (flagged reading, method). Every method looks at one series at a time: the readings
of one (``device_id``, ``metric``) in ``event_time`` order (ties by ``event_id``), and compares a
reading with the **trailing** readings before it (never with later ones, so a reading's verdict
does not change when more data arrives). The caller passes the trailing context (the readings
before the evaluated hours) and ``hours`` selects the readings that are output.

* ``robust_zscore``: ``expected`` = median of the previous ``window`` readings (not the current
  one), ``z = |value - expected| / scale`` with ``scale = 1.4826 * MAD`` of those readings (the
  MAD of Gaussian noise times 1.4826 is its standard deviation). Flagged when ``z > threshold``
  and the series has at least ``min_history`` previous readings.
  ``score = min(1, z / (2 * threshold))``: 0.5 at the threshold, 1 at twice the threshold.
* ``isolation_forest``: a scikit-learn ``IsolationForest`` over per-reading features of the same
  trailing statistics (:data:`FEATURES`), trained on trailing history; it lives in
  :mod:`tidelake.transform.anomaly_model` (:class:`~tidelake.transform.anomaly_model.AnomalyModel`).

Precision/recall/F1 against labelled readings is :mod:`tidelake.transform.anomaly_scoring`.
This module holds the table schema, the constants, the robust z-score rule and the trailing
window and feature helpers both methods share (it imports neither of the other two).

**A zero MAD.** When more than half of the trailing readings are equal (a flat or quantised
history) the MAD is 0 and every other value would be infinitely far. Then the scale falls back to
``1.2533 * mean absolute deviation from the median`` (the Iglewicz-Hoaglin fallback; 1.2533 makes
it sigma for Gaussian noise), which sees the readings that do vary; when the whole window is
flat, that is 0 too, and the scale is floored at ``SCALE_FLOOR`` (0.1 %) of ``max(|median|, 1)``:
a step of one resolution unit after a flat history (0.01 on 21.4 °C) is then ~0.5 SDs, not inf,
while a jump to 97.3 is thousands of SDs. Real noise is far above that floor (>= 1 % of level for
the simulator's metrics), so the floor changes nothing else. Exact repeats of the previous reading
are left out of the reference window (see :func:`_window_stats`): a stuck run would otherwise
shrink the MAD and flag the ordinary readings after it.

Exact medians over a sliding window are not a Polars expression (``rolling_median`` is, but the
MAD needs each window's own median), so the window statistics are computed with NumPy over
sliding-window views in chunks (float32 sorts around the previous reading); everything else is
Polars. All features of 1M readings take ~3 s; scoring them with the forest ~7 s more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow as pa
from numpy.lib.stride_tricks import sliding_window_view

_UTC_US = pa.timestamp("us", tz="UTC")

SENSOR_ANOMALIES_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("site", pa.string(), nullable=True),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("event_time", _UTC_US, nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("expected", pa.float64(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detected_at", _UTC_US, nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("event_hour", pa.int32(), nullable=False),
    ]
)
"""Arrow schema of ``gold/sensor_anomalies`` (partitioned by the reading's ``event_time``)."""

ROBUST_ZSCORE = "robust_zscore"
ISOLATION_FOREST = "isolation_forest"
METHODS: tuple[str, ...] = (ROBUST_ZSCORE, ISOLATION_FOREST)
KINDS: tuple[str, ...] = ("spike", "level_shift", "stuck", "drift")
"""Scenario kinds of the simulator's ``anomaly:<kind>`` labels."""

MAD_TO_SIGMA = 1.4826
MEAN_AD_TO_SIGMA = 1.2533
SCALE_FLOOR = 1e-3
SERIES = ("device_id", "metric")
HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"
"""Hour partition keys, e.g. ``2026-03-01-10:00`` (Dagster's hourly partition key format)."""

SPREAD_EPSILON = 1e-6
STUCK_RUN = 4
"""Readings in the rolling spread of the stuck feature: the current one and the 3 before it.

With the labels' "stuck" (20 readings equal to the one before, labelled from the 3rd), the 3rd
stuck reading is the first whose last 4 readings are all equal, so the spread is exactly 0 from
the first labelled reading on and not before it."""

FEATURES: tuple[str, ...] = ("z", "z_lagged", "log_spread")
"""Per-reading features of the learned method, all in units of the trailing robust SD:

* ``z``: signed ``(value - trailing median) / scale`` (spikes, the start of a level shift);
* ``z_lagged``: the same against the window that ended ``window`` readings earlier, which a
  level shift or drift has not contaminated yet (the trailing window has, and its inflated MAD
  hides the end of a level shift and most of a drift from ``z``);
* ``log_spread``: ``log10(std of the last 4 readings / scale + 1e-6)``, -6 when they are equal
  (stuck sensor), about 0 for noise (the log spreads the gap so the forest isolates it).

Not used, on purpose: the difference from the previous reading and the mean of the last 10
readings would flag the normal readings just *after* a spike or a level shift."""


def robust_zscore(
    readings: pl.DataFrame,
    *,
    hours: Sequence[str] | None,
    window: int = 60,
    threshold: float = 6.0,
    min_history: int = 20,
    detected_at: datetime,
) -> pl.DataFrame:
    """Readings more than ``threshold`` robust SDs from their trailing median (rule above).

    Args:
        readings: sensor readings (``event_id``, ``device_id``, ``site``, ``metric``,
            ``event_time``, ``value``; ``unit`` is used in the reason when present), including
            at least ``window`` readings of context before the evaluated hours.
        hours: hour partition keys (``YYYY-MM-DD-HH:00``) whose readings are output; None = all.
        window: trailing readings in the median and MAD.
        threshold: the robust z above which a reading is flagged.
        min_history: fewer previous readings than this → not evaluated.
        detected_at: written to ``detected_at``.

    Returns:
        Flagged readings in :data:`SENSOR_ANOMALIES_SCHEMA` order and types.
    """
    _check_window(window, min_history)
    frame = _features(readings, window=window, min_history=min_history)
    z = pl.col("z").abs()
    flagged = frame.filter(_selected(hours) & pl.col("_evaluated") & (z > threshold))
    reason = pl.format(
        "value {}{} is {} robust SDs from the trailing median {} (threshold {})",
        _num("value"),
        _unit(flagged),
        z.round(1).cast(pl.String),
        _num("expected"),
        pl.lit(f"{threshold:g}"),
    )
    return _finish(
        flagged.with_columns(
            pl.min_horizontal(z / (2 * threshold), pl.lit(1.0)).alias("score"),
            reason.alias("reason"),
        ),
        ROBUST_ZSCORE,
        detected_at,
    )


def hour_starts(hours: Sequence[str]) -> pl.Series:
    """The UTC starts of hour partition keys (``YYYY-MM-DD-HH:00``).

    Raises:
        ValueError: a key is not in that format.
    """
    starts = []
    for key in hours:
        try:
            start = datetime.strptime(key, HOUR_KEY_FORMAT).replace(tzinfo=UTC)
        except ValueError as exc:
            raise ValueError(f"not an hour partition key (YYYY-MM-DD-HH:00): {key!r}") from exc
        if start.minute:
            raise ValueError(f"not an hour partition key (YYYY-MM-DD-HH:00): {key!r}")
        starts.append(start)
    return pl.Series("hours", starts, dtype=pl.Datetime("us", "UTC"))


def _check_window(window: int, min_history: int) -> None:
    if window < 2 or min_history < 1:
        raise ValueError(f"need window >= 2 and min_history >= 1, got {window}, {min_history}")


def _selected(hours: Sequence[str] | None) -> pl.Expr:
    """True for the readings of ``hours`` (all when None)."""
    if hours is None:
        return pl.lit(True)
    return pl.col("event_time").dt.truncate("1h").is_in(hour_starts(hours).implode())


def _features(readings: pl.DataFrame, *, window: int, min_history: int) -> pl.DataFrame:
    """Readings in series order with the trailing statistics and :data:`FEATURES`.

    Adds ``_pos`` (index in its series), ``_evaluated`` (>= ``min_history`` previous readings),
    ``expected`` and ``_scale`` (trailing median and robust SD), ``_expected_lagged``/
    ``_scale_lagged`` (those of the reading ``window`` earlier, or the current ones while the
    series is shorter than that), ``_spread`` (std of the last :data:`STUCK_RUN` readings /
    scale) and the features.
    """
    frame = (
        readings.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
        .with_columns(pl.col("value").cast(pl.Float64))
        .sort([*SERIES, "event_time", "event_id"])
        .with_columns(pl.int_range(pl.len()).over(SERIES).alias("_pos"))
    )
    med, scale = _window_stats(frame["value"].to_numpy(), frame["_pos"].to_numpy(), window)
    lagged = pl.col("_pos") >= window + min_history
    return (
        frame.with_columns(
            pl.Series("expected", med, dtype=pl.Float64),
            pl.Series("_scale", scale, dtype=pl.Float64),
        )
        .with_columns(
            (pl.col("_pos") >= min_history).alias("_evaluated"),
            ((pl.col("value") - pl.col("expected")) / pl.col("_scale")).alias("z"),
            pl.when(lagged)
            .then(pl.col("expected").shift(window).over(SERIES))
            .otherwise(pl.col("expected"))
            .alias("_expected_lagged"),
            pl.when(lagged)
            .then(pl.col("_scale").shift(window).over(SERIES))
            .otherwise(pl.col("_scale"))
            .alias("_scale_lagged"),
            (pl.col("value").rolling_std(STUCK_RUN).over(SERIES) / pl.col("_scale"))
            .fill_null(1.0)
            .alias("_spread"),
        )
        .with_columns(
            ((pl.col("value") - pl.col("_expected_lagged")) / pl.col("_scale_lagged")).alias(
                "z_lagged"
            ),
            (pl.col("_spread") + SPREAD_EPSILON).log10().alias("log_spread"),
        )
    )


def _window_stats(
    values: np.ndarray, pos: np.ndarray, window: int, chunk: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust SD (scale rule in the module doc) of the reference window of each row.

    The reference window of row r is ``values[r-k:r]``, ``k = min(pos[r], window)`` (rows are in
    series order and ``pos`` is the index within the series, so it never reaches into the
    previous series), **without exact repeats of the previous reading**: a stuck run says
    nothing about the noise, and 20 equal values in 60 would otherwise shrink the MAD by half
    and flag ordinary readings after the run. A window of nothing but repeats has the repeated
    value as median and the floor as scale. NaN for a series' first reading.
    Windows are sorted as float32 after subtracting the previous reading, which keeps the
    differences exact to ~1e-7 of the window's spread and sorts several times faster.
    """
    n = values.size
    med = np.full(n, np.nan)
    scale = np.full(n, np.nan)
    if n == 0:
        return med, scale
    prev = np.concatenate([[np.nan], values[:-1]])
    center = np.where(pos > 0, prev, np.nan)
    repeat = (pos > 0) & (values == prev)
    out_of_series = np.arange(window)[None, :] < (window - np.minimum(pos, window))[:, None]
    views = sliding_window_view(np.concatenate([np.full(window, np.nan), values]), window)
    repeats = sliding_window_view(np.concatenate([np.zeros(window, bool), repeat]), window)
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        w = (views[start:end] - center[start:end, None]).astype(np.float32)
        w[out_of_series[start:end] | repeats[start:end]] = np.nan
        have = np.count_nonzero(~np.isnan(w), axis=1)
        rows = np.arange(end - start)
        lo, hi = np.maximum((have - 1) // 2, 0), np.maximum(have // 2, 0)
        ordered = np.sort(w, axis=1)  # NaN sorts last: the values come first
        mid = np.where(have > 0, (ordered[rows, lo] + ordered[rows, hi]) / 2, 0.0)
        dev = np.abs(w - mid[:, None])
        ordered_dev = np.sort(dev, axis=1)
        mad = np.where(have > 0, (ordered_dev[rows, lo] + ordered_dev[rows, hi]) / 2, 0.0)
        mean_ad = np.nansum(dev, axis=1, dtype=np.float64) / np.maximum(have, 1)
        med[start:end] = center[start:end] + mid
        scale[start:end] = np.where(
            mad > 0, MAD_TO_SIGMA * mad.astype(np.float64), MEAN_AD_TO_SIGMA * mean_ad
        )
    return med, np.maximum(scale, SCALE_FLOOR * np.maximum(np.abs(med), 1.0))


def _num(column: str) -> pl.Expr:
    return pl.col(column).round(4).cast(pl.String)


def _unit(frame: pl.DataFrame) -> pl.Expr:
    """`` <unit>`` when the readings carry a unit, else the empty string."""
    if "unit" not in frame.columns:
        return pl.lit("")
    return pl.concat_str([pl.lit(" "), pl.col("unit")]).fill_null("")


def _finish(frame: pl.DataFrame, method: str, detected_at: datetime) -> pl.DataFrame:
    """The flagged rows as :data:`SENSOR_ANOMALIES_SCHEMA` columns, in time order."""
    site = pl.col("site") if "site" in frame.columns else pl.lit(None)
    ts = pl.Datetime("us", "UTC")
    return frame.select(
        pl.col("event_id").cast(pl.String),
        pl.col("device_id").cast(pl.String),
        site.cast(pl.String).alias("site"),
        pl.col("metric").cast(pl.String),
        pl.col("event_time").cast(ts),
        pl.col("value").cast(pl.Float64),
        pl.col("expected").cast(pl.Float64),
        pl.col("score").cast(pl.Float64),
        pl.lit(method, dtype=pl.String).alias("method"),
        pl.col("reason").cast(pl.String),
        pl.lit(detected_at).cast(ts).alias("detected_at"),
        pl.col("event_time").dt.date().alias("event_date"),
        pl.col("event_time").dt.hour().cast(pl.Int32).alias("event_hour"),
    ).sort("event_time", "device_id", "metric", "event_id")


__all__ = [
    "FEATURES",
    "ISOLATION_FOREST",
    "KINDS",
    "METHODS",
    "ROBUST_ZSCORE",
    "SENSOR_ANOMALIES_SCHEMA",
    "hour_starts",
    "robust_zscore",
]
