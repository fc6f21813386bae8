"""The learned method of ``gold/sensor_anomalies``: an isolation forest over trailing features.

:func:`train_isolation_forest` fits a scikit-learn ``IsolationForest`` on the per-reading
:data:`~tidelake.transform.anomalies.FEATURES` of trailing history and calibrates its threshold
on the readings that look normal; :func:`isolation_forest` flags the readings whose anomaly score
exceeds it. The features, the trailing-window rules and the output schema are those of
:mod:`tidelake.transform.anomalies` (which documents both methods).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest

from tidelake.transform.anomalies import (
    FEATURES,
    ISOLATION_FOREST,
    MAD_TO_SIGMA,
    STUCK_RUN,
    _check_window,
    _features,
    _finish,
    _num,
    _selected,
    _unit,
)

# What "looks normal" when calibrating the threshold (see train_isolation_forest).
_CALIBRATION_Z = 6.0
_CALIBRATION_LOG_SPREAD = -2.0


@dataclass(frozen=True)
class AnomalyModel:
    """A fitted isolation forest and what it was trained on.

    ``threshold`` is on ``score`` = the isolation forest anomaly score ``-score_samples`` (0..1;
    about 0.4 for typical readings, towards 1 for readings isolated in a few splits).
    """

    version: str
    trained_at: datetime
    training_window: tuple[datetime, datetime]
    n_readings: int
    features: tuple[str, ...]
    contamination: float
    threshold: float
    window: int
    min_history: int
    seed: int
    feature_center: tuple[float, ...]
    feature_scale: tuple[float, ...]
    estimator: IsolationForest = field(repr=False, compare=False)


def train_isolation_forest(
    history: pl.DataFrame,
    *,
    trained_at: datetime,
    seed: int = 0,
    window: int = 60,
    min_history: int = 20,
    contamination: float = 1e-4,
    n_estimators: int = 100,
    max_training_rows: int = 200_000,
) -> AnomalyModel:
    """Fit the isolation forest on the features of trailing ``history`` (anomalies included).

    The forest learns from everything (it is unsupervised; the anomalies of the history are
    what it learns to isolate). The **threshold** is calibrated on the training readings that
    look normal (``|z|`` and ``|z_lagged|`` <= 6, spread not collapsed): the anomaly score that
    only ``contamination`` of them exceed, i.e. the false-alarm rate on normal noise. A quantile
    over all readings would depend on how many anomalies the history happened to hold.

    Args:
        history: readings as for :func:`robust_zscore` (the trailing days, not the hours that
            will be scored).
        trained_at: recorded in the model.
        seed: the forest's random state and the sampling seed (same data and seed → same model).
        window, min_history: as for :func:`robust_zscore`.
        contamination: the share of normal-looking training readings above the threshold.
        n_estimators: trees.
        max_training_rows: a seeded sample of at most this many readings is used.

    Raises:
        ValueError: fewer than 100 readings have ``min_history`` previous readings.
    """
    _check_window(window, min_history)
    frame = _features(history, window=window, min_history=min_history).filter("_evaluated")
    if frame.height < 100:
        raise ValueError(f"need >= 100 readings with history to train, got {frame.height}")
    if frame.height > max_training_rows:
        frame = frame.sample(max_training_rows, seed=seed)
    x = frame.select(FEATURES).to_numpy()
    estimator = IsolationForest(
        n_estimators=n_estimators, max_samples=256, random_state=seed, n_jobs=1
    ).fit(x)
    normal_looking = frame.select(
        (pl.col("z").abs() <= _CALIBRATION_Z)
        & (pl.col("z_lagged").abs() <= _CALIBRATION_Z)
        & (pl.col("log_spread") > _CALIBRATION_LOG_SPREAD)
    ).to_series()
    scores = -estimator.score_samples(x[normal_looking.to_numpy()])
    threshold = float(np.quantile(scores, 1.0 - contamination)) if scores.size else 0.5
    center = np.median(x, axis=0)
    spread = MAD_TO_SIGMA * np.median(np.abs(x - center), axis=0)
    start, end = frame["event_time"].min(), frame["event_time"].max()
    assert isinstance(start, datetime) and isinstance(end, datetime)
    params = {
        "window": window,
        "min_history": min_history,
        "contamination": contamination,
        "n_estimators": n_estimators,
        "seed": seed,
        "features": list(FEATURES),
    }
    digest = hashlib.sha256(
        json.dumps(
            [start.isoformat(), end.isoformat(), frame.height, params], sort_keys=True
        ).encode()
    ).hexdigest()
    return AnomalyModel(
        version=f"if-{digest[:12]}",
        trained_at=trained_at,
        training_window=(start, end),
        n_readings=frame.height,
        features=FEATURES,
        contamination=contamination,
        threshold=threshold,
        window=window,
        min_history=min_history,
        seed=seed,
        feature_center=tuple(float(c) for c in center),
        feature_scale=tuple(float(max(s, 1e-6)) for s in spread),
        estimator=estimator,
    )


def isolation_forest(
    readings: pl.DataFrame,
    model: AnomalyModel,
    *,
    hours: Sequence[str] | None,
    detected_at: datetime,
) -> pl.DataFrame:
    """Readings whose isolation forest anomaly score exceeds ``model.threshold``.

    ``expected`` is the trailing median, ``score`` the anomaly score (0..1) and ``reason`` names
    the feature furthest from its training median (in training robust SDs) with its figures.

    Args:
        readings: as for :func:`robust_zscore` (with ``model.window`` readings of context).
        model: from :func:`train_isolation_forest`.
        hours: hour partition keys whose readings are output; None = all.
        detected_at: written to ``detected_at``.
    """
    frame = _features(readings, window=model.window, min_history=model.min_history)
    frame = frame.filter(_selected(hours) & pl.col("_evaluated"))
    if frame.height == 0:
        return _finish(
            frame.with_columns(score=0.0, reason=pl.lit("")), ISOLATION_FOREST, detected_at
        )
    x = frame.select(model.features).to_numpy()
    scores = -model.estimator.score_samples(x)
    strength = np.abs((x - np.array(model.feature_center)) / np.array(model.feature_scale))
    frame = frame.with_columns(
        pl.Series("score", scores, dtype=pl.Float64),
        pl.Series("_strongest", np.array(model.features)[strength.argmax(axis=1)], dtype=pl.String),
    ).filter(pl.col("score") > model.threshold)
    unit = _unit(frame)
    detail = (
        pl.when(pl.col("_strongest") == "log_spread")
        .then(
            pl.format(
                "the last {} readings vary by {} robust SDs (stuck at {}{}?)",
                pl.lit(STUCK_RUN),
                pl.col("_spread").round(3).cast(pl.String),
                _num("value"),
                unit,
            )
        )
        .when(pl.col("_strongest") == "z_lagged")
        .then(
            pl.format(
                "value {}{} is {} robust SDs from the median {} of the readings {} to {} back",
                _num("value"),
                unit,
                pl.col("z_lagged").round(1).cast(pl.String),
                _num("_expected_lagged"),
                pl.lit(model.window + 1),
                pl.lit(2 * model.window),
            )
        )
        .otherwise(
            pl.format(
                "value {}{} is {} robust SDs from the trailing median {}",
                _num("value"),
                unit,
                pl.col("z").round(1).cast(pl.String),
                _num("expected"),
            )
        )
    )
    reason = pl.format(
        "isolation forest score {} > {} (model {}): {}",
        pl.col("score").round(3).cast(pl.String),
        pl.lit(f"{model.threshold:.3f}"),
        pl.lit(model.version),
        detail,
    )
    return _finish(frame.with_columns(reason.alias("reason")), ISOLATION_FOREST, detected_at)


__all__ = [
    "AnomalyModel",
    "isolation_forest",
    "train_isolation_forest",
]
