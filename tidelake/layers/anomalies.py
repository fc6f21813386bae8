"""``gold/sensor_anomalies``: both anomaly methods over silver sensor readings, by stale hour.

An hour of anomalies is :func:`tidelake.transform.anomalies.robust_zscore` and
:func:`tidelake.transform.anomaly_model.isolation_forest` over that hour's readings, with
:data:`CONTEXT_HOURS` hours of readings before it as the trailing windows (60 readings per device
and metric, and the lagged window before those). A reading hour H changes the anomalies of H and
of the :data:`CONTEXT_HOURS` after it (their trailing windows), never past the open hour.

The learned model is trained on the readings before the first hour being refreshed (the context:
trailing history, anomalies included, as the method expects; a backfill without
:data:`MIN_TRAINING_READINGS` of earlier history fits on the readings it scores) and kept per
training window by :class:`ModelCache`, so the worker's rounds over the open hour reuse one model
instead of training one per round. Its version and training window are in
:attr:`Anomalies.last_model` for the materialization metadata.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa

from tidelake.contracts import TOPICS
from tidelake.lake import Lake
from tidelake.layers.derive import Built, Derivation, refresh, stale_hours
from tidelake.layers.hours import hour_start, key_of
from tidelake.layers.result import RefreshResult, StaleHours
from tidelake.settings import RefreshSettings
from tidelake.transform.anomalies import (
    ISOLATION_FOREST,
    ROBUST_ZSCORE,
    SENSOR_ANOMALIES_SCHEMA,
    robust_zscore,
)
from tidelake.transform.anomaly_model import AnomalyModel, isolation_forest, train_isolation_forest
from tidelake.transform.windows import to_arrow

SENSOR_ANOMALIES_PATH = "gold/sensor_anomalies"
SENSORS = TOPICS["infra.sensor_readings"]
CONTEXT_HOURS = 3
"""Hours of readings before a refreshed hour: 60 readings plus the lagged window per series at
the dev stack's ~1 reading per 40 s per series; at higher rates the windows fill sooner."""
MIN_TRAINING_READINGS = 500
"""Fewer readings of history than this: the learned method is not evaluated for the hours."""
COLUMNS = ("event_id", "device_id", "site", "metric", "event_time", "value", "unit")


@dataclass
class ModelCache:
    """Trained models by training window (start, end, readings): a round over the same hours
    with the same history reuses its model. Keeps the last few."""

    keep: int = 4
    models: dict[tuple[datetime, datetime, int], AnomalyModel] = field(default_factory=dict)

    def get(self, history: pl.DataFrame, trained_at: datetime) -> AnomalyModel | None:
        if history.height < MIN_TRAINING_READINGS:
            return None
        times = history["event_time"]
        key = (times.min(), times.max(), history.height)
        model = self.models.get(key)  # type: ignore[arg-type]
        if model is None:
            model = train_isolation_forest(history, trained_at=trained_at)
            self.models[key] = model  # type: ignore[index]
            while len(self.models) > self.keep:
                self.models.pop(next(iter(self.models)))
        return model


@dataclass
class Anomalies:
    """The derivation of ``gold/sensor_anomalies`` and the model its last build used."""

    cache: ModelCache = field(default_factory=ModelCache)
    last_model: AnomalyModel | None = None

    def derivation(self) -> Derivation:
        def build(inputs: Mapping[str, pa.Table], keys: Sequence[str]) -> Built:
            table = inputs.get(SENSORS.silver_path)
            readings = pl.DataFrame() if table is None else pl.DataFrame(pl.from_arrow(table))
            now = datetime.now(UTC)
            frames = []
            if readings.height:
                frames.append(robust_zscore(readings, hours=keys, detected_at=now))
                first = min(hour_start(k) for k in keys)
                history = readings.filter(pl.col("event_time") < first)
                if history.height < MIN_TRAINING_READINGS:
                    # A backfill with no earlier history: fit on the readings being scored
                    # (in-sample, as an unsupervised forest may be); live hours have context.
                    history = readings
                model = self.cache.get(history, now)
                self.last_model = model
                if model is not None:
                    frames.append(isolation_forest(readings, model, hours=keys, detected_at=now))
            found = pl.concat(frames) if frames else pl.DataFrame()
            rows = (
                to_arrow(found, SENSOR_ANOMALIES_SCHEMA)
                if found.height
                else SENSOR_ANOMALIES_SCHEMA.empty_table()
            )
            return Built(rows, _details(found, keys))

        return Derivation(
            output=SENSOR_ANOMALIES_PATH,
            inputs=(SENSORS.silver_path,),
            schema=SENSOR_ANOMALIES_SCHEMA,
            description=(
                "One row per (sensor reading, method) flagged as anomalous, with the expected "
                "value, a score and a reason; hour partitions of the reading's event_time."
            ),
            build=build,
            columns=COLUMNS,
            context_hours={SENSORS.silver_path: CONTEXT_HOURS},
            affects_hours={SENSORS.silver_path: CONTEXT_HOURS},
        )

    def refresh(
        self,
        lake: Lake,
        hours: Collection[str] | None = None,
        *,
        settings: RefreshSettings,
        now: datetime | None = None,
        max_hours: int | None = None,
    ) -> RefreshResult:
        """Recompute the stale hours (:func:`tidelake.layers.derive.refresh`). Details per
        hour: ``anomalies_robust_zscore``, ``anomalies_isolation_forest``."""
        return refresh(lake, self.derivation(), hours, settings, now, max_hours)

    def model_metadata(self) -> dict[str, str | int]:
        """The learned model's version and training window (empty before any build)."""
        model = self.last_model
        if model is None:
            return {}
        start, end = model.training_window
        return {
            "model_version": model.version,
            "model_training_window": f"{start.isoformat()}/{end.isoformat()}",
            "model_training_readings": model.n_readings,
        }


def _details(found: pl.DataFrame, keys: Sequence[str]) -> dict[str, dict[str, int]]:
    out = {k: {f"anomalies_{m}": 0 for m in (ROBUST_ZSCORE, ISOLATION_FOREST)} for k in keys}
    if found.height:
        counts = found.group_by("event_date", "event_hour", "method").len()
        for day, hour, method, n in counts.iter_rows():
            key = key_of(day, int(hour))
            if key in out:
                out[key][f"anomalies_{method}"] = int(n)
    return out


def stale_anomaly_hours(lake: Lake, now: datetime | None = None) -> StaleHours:
    """Hours of ``gold/sensor_anomalies`` whose readings changed (as of ``now``, which bounds
    how far a late reading's effect on the following hours reaches)."""
    return stale_hours(lake, Anomalies().derivation(), now)


__all__ = [
    "CONTEXT_HOURS",
    "SENSOR_ANOMALIES_PATH",
    "Anomalies",
    "ModelCache",
    "stale_anomaly_hours",
]
