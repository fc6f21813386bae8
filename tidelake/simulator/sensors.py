"""Sensor devices: noisy readings around a per-device baseline, with labelled anomaly segments.

Each (device, metric) is a series. A normal reading is ``baseline + drift + N(0, noise)``, where
the drift is a slow mean-reverting wander (stationary spread about half the noise) so the series
looks real without looking anomalous. Anomalies are injected as labelled *segments* with the
semantics of the shared labels contract (sigma is the metric's ``noise``; the "baseline" of a
reading is the normal value the series would have had):

- ``spike``: one reading >= 15 sigma off (``anomaly:spike``; the contract asks >= 12 sigma);
- ``level_shift``: 20 readings shifted by >= 12 sigma (contract: >= 10), then back; all labelled;
- ``stuck``: 20 readings exactly equal to the reading just before; labelled from the 3rd;
- ``drift``: 60 readings drifting linearly to 15 sigma; labelled where the drift exceeds 6 sigma.

A series starts a segment only after >= 100 normal readings (from its first reading, and since
its last segment), so segments never overlap and detectors always have a normal history.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

SEGMENT_GAP = 100
"""Normal readings a series needs (since its start or its last segment) before a new segment."""
SHIFT_READINGS = 20
STUCK_READINGS = 20
STUCK_UNLABELLED = 2
DRIFT_READINGS = 60
DRIFT_SIGMAS = 15.0
DRIFT_LABEL_SIGMAS = 6.0


@dataclass(frozen=True)
class MetricSpec:
    """A sensor metric: typical baseline range, reading noise sigma, unit and typical spike size."""

    name: str
    unit: str
    base_low: float
    base_high: float
    noise: float
    spike: float


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("temperature", "C", 20.0, 24.0, 0.3, 15.0),
    MetricSpec("humidity", "%", 38.0, 52.0, 1.2, 30.0),
    MetricSpec("power", "W", 250.0, 900.0, 8.0, 600.0),
    MetricSpec("fan_speed", "rpm", 1800.0, 3200.0, 40.0, 2500.0),
)


@dataclass(eq=False)
class Segment:
    """An anomaly in progress on one series: its kind, readings left and per-reading offset."""

    kind: str
    length: int
    sign: float
    size: float
    stuck_value: float = 0.0
    done: int = 0


@dataclass(eq=False)
class Series:
    """One (device, metric) series and its anomaly state."""

    spec: MetricSpec
    baseline: float
    drift: float = 0.0
    last_value: float | None = None
    normal_run: int = 0
    segment: Segment | None = None


@dataclass(eq=False)
class Sensor:
    """A device at a site reporting its metrics in turn."""

    device_id: str
    site: str
    series: list[Series]
    next_metric: int = 0
    metrics: list[MetricSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = [s.spec for s in self.series]


def make_sensor(rng: random.Random, i: int, sites: tuple[str, ...]) -> Sensor:
    """Device ``i``: temperature plus 1-3 other metrics, baselines drawn in their typical range."""
    site = sites[i % len(sites)]
    metrics = [METRICS[0], *rng.sample(METRICS[1:], rng.randint(1, len(METRICS) - 1))]
    series = [Series(m, rng.uniform(m.base_low, m.base_high)) for m in metrics]
    return Sensor(f"sensor-{site}-{i:03d}", site, series)


class AnomalyInjector:
    """Decides when a series starts an anomaly segment, and of which kind.

    Args:
        rng: the world's random generator.
        every_readings: mean normal readings between two segment starts (over all series).
        kinds: the kinds to draw from (uniformly); empty disables injection.
    """

    def __init__(self, rng: random.Random, every_readings: float, kinds: tuple[str, ...]) -> None:
        self.rng = rng
        self.p_start = 1.0 / every_readings
        self.kinds = kinds

    def maybe_start(self, s: Series) -> None:
        """Possibly start a segment on ``s`` (only after :data:`SEGMENT_GAP` normal readings)."""
        rng = self.rng
        if not self.kinds or s.normal_run < SEGMENT_GAP or s.last_value is None:
            return
        if rng.random() >= self.p_start:
            return
        kind = self.kinds[rng.randrange(len(self.kinds))]
        spec = s.spec
        sigma = spec.noise
        if kind == "spike":
            length, size = 1, max(15.0 * sigma, spec.spike * rng.uniform(0.6, 1.2))
        elif kind == "level_shift":
            length, size = SHIFT_READINGS, max(12.0 * sigma, spec.spike * rng.uniform(0.4, 0.8))
        elif kind == "stuck":
            length, size = STUCK_READINGS, 0.0
        else:
            length, size = DRIFT_READINGS, DRIFT_SIGMAS * sigma  # the drift's final offset
        # Downwards only where the value stays physical (no negative watts or humidity).
        sign = -1.0 if rng.random() < 0.3 and s.baseline - 1.5 * size > 0 else 1.0
        s.segment = Segment(kind, length, sign, size, stuck_value=s.last_value)


def next_reading(rng: random.Random, s: Series) -> tuple[float, str | None]:
    """The next value of series ``s`` and its label (``None`` = normal), advancing its state."""
    spec = s.spec
    sigma = spec.noise
    # Mean-reverting drift: wanders about 0.5 sigma around the baseline, never runs away.
    s.drift = s.drift * 0.98 + rng.gauss(0.0, sigma * 0.1)
    normal = s.baseline + s.drift + rng.gauss(0.0, sigma)
    seg = s.segment
    label: str | None = None
    if seg is None:
        value = normal
        s.normal_run += 1
    else:
        seg.done += 1
        k = seg.done
        if seg.kind == "stuck":
            value = seg.stuck_value
            label = "anomaly:stuck" if k > STUCK_UNLABELLED else None
        elif seg.kind == "drift":
            # Compared in sigmas (exact: k/4), not in units, where 24 steps of 15/60 sigma can
            # round past 6 sigma.
            sigmas = DRIFT_SIGMAS * k / DRIFT_READINGS
            value = normal + seg.sign * sigmas * sigma
            label = "anomaly:drift" if sigmas > DRIFT_LABEL_SIGMAS else None
        else:
            value = normal + seg.sign * seg.size
            label = f"anomaly:{seg.kind}"
        if k >= seg.length:
            s.segment = None
            s.normal_run = 0  # the gap to the next segment counts from here
    if spec.name == "humidity":
        value = min(100.0, max(0.0, value))
    value = round(value, 2)
    s.last_value = value
    return value, label


def plain_reading(rng: random.Random, sensor: Sensor, i: int) -> dict[str, Any]:
    """A normal-looking reading of metric ``i`` that leaves the series untouched.

    For messages outside the live series (very late, malformed): they must not break a segment.
    """
    s = sensor.series[i]
    value = s.baseline + s.drift + rng.gauss(0.0, s.spec.noise)
    return reading_payload(sensor, s.spec, round(value, 2))


def reading_payload(sensor: Sensor, spec: MetricSpec, value: float) -> dict[str, Any]:
    """The ``infra.sensor_readings`` payload fields in contract order."""
    return {
        "device_id": sensor.device_id,
        "site": sensor.site,
        "metric": spec.name,
        "value": value,
        "unit": spec.unit,
    }
