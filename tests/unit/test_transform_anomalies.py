"""Gold sensor anomalies: the robust z-score rule, the isolation forest, and their measured
precision/recall against labelled synthetic scenarios (the labels contract in the simulator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tidelake.transform.anomalies import (
    ISOLATION_FOREST,
    ROBUST_ZSCORE,
    SENSOR_ANOMALIES_SCHEMA,
    hour_starts,
    robust_zscore,
)
from tidelake.transform.anomaly_model import isolation_forest, train_isolation_forest
from tidelake.transform.anomaly_scoring import score_against_labels
from tidelake.transform.windows import to_arrow

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
METRICS = (
    ("temperature", "C", 21.0, 0.3),
    ("power", "W", 500.0, 8.0),
    ("humidity", "%", 45.0, 1.2),
)
KINDS = ("spike", "level_shift", "stuck", "drift")


def series(
    values: list[float] | np.ndarray, *, device: str = "dev-1", unit: str = "C"
) -> pl.DataFrame:
    """One device+metric, one reading a minute from T0."""
    n = len(values)
    return pl.DataFrame(
        {
            "event_id": [f"{device}-{i}" for i in range(n)],
            "device_id": device,
            "site": "fra1",
            "metric": "temperature",
            "unit": unit,
            "event_time": [T0 + timedelta(minutes=i) for i in range(n)],
            "value": np.asarray(values, dtype=float),
        },
        schema_overrides={"event_time": pl.Datetime("us", "UTC")},
    )


def noise(n: int, seed: int = 0, mu: float = 21.0, sigma: float = 0.3) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(mu, sigma, n), 2)


def synthetic(seed: int, devices: int = 8, n: int = 2800, every: int = 200) -> pl.DataFrame:
    """Gaussian noise per device+metric with labelled scenarios as in the labels contract:
    spikes (>= 12 sigma), level shifts (20 readings, >= 10 sigma), stuck runs (20 readings equal
    to the one before, labelled from the 3rd) and drifts (60 readings to 15 sigma, labelled where
    beyond 6 sigma), each followed by >= 100 normal readings."""
    rng = np.random.default_rng(seed)
    frames = []
    for d in range(devices):
        for name, unit, mu, sigma in METRICS:
            base = mu + rng.uniform(-3, 3) * sigma
            values = base + rng.normal(0.0, sigma, n)
            labels = np.full(n, None, dtype=object)
            for i in range(150, n - 80, every):
                kind = KINDS[rng.integers(4)]
                sign = 1.0 if rng.random() < 0.5 else -1.0
                if kind == "spike":
                    values[i] = base + sign * rng.uniform(12, 16) * sigma
                    labels[i] = "anomaly:spike"
                elif kind == "level_shift":
                    values[i : i + 20] += sign * rng.uniform(10, 12) * sigma
                    labels[i : i + 20] = "anomaly:level_shift"
                elif kind == "stuck":
                    values[i : i + 20] = values[i - 1]
                    labels[i + 2 : i + 20] = "anomaly:stuck"
                else:
                    dev = sign * 15 * sigma * np.arange(1, 61) / 60
                    values[i : i + 60] += dev
                    labels[i : i + 60][np.abs(dev) > 6 * sigma] = "anomaly:drift"
            start = T0 + timedelta(seconds=int(rng.integers(0, 60)))
            frames.append(
                pl.DataFrame(
                    {
                        "event_id": [f"d{d}-{name}-{i}" for i in range(n)],
                        "device_id": f"dev-{d}",
                        "site": "fra1",
                        "metric": name,
                        "unit": unit,
                        "event_time": [start + timedelta(minutes=i) for i in range(n)],
                        "value": np.round(values, 2),
                        "label": list(labels),
                    },
                    schema_overrides={"event_time": pl.Datetime("us", "UTC"), "label": pl.String},
                )
            )
    return pl.concat(frames)


def hour_keys(start: datetime, hours: int) -> list[str]:
    return [(start + timedelta(hours=h)).strftime("%Y-%m-%d-%H:00") for h in range(hours)]


# ------------------------------------------------------------------ robust z-score


def test_a_spike_is_flagged_with_its_figures_and_a_five_sigma_reading_is_not() -> None:
    values = noise(200)
    values[120] = 21.0 + 12 * 0.3 + 1.0
    values[160] = 21.0 + 4 * 0.3
    out = robust_zscore(series(values), hours=None, detected_at=NOW)
    assert out["event_id"].to_list() == ["dev-1-120"]
    row = out.row(0, named=True)
    assert row["expected"] == pytest.approx(float(np.median(values[60:120])))
    assert row["method"] == ROBUST_ZSCORE
    assert 0.5 < row["score"] <= 1.0
    assert row["detected_at"] == NOW
    assert row["reason"].startswith(f"value {values[120]} C is ")
    assert "robust SDs from the trailing median" in row["reason"]
    assert row["reason"].endswith("(threshold 6)")


def test_expected_is_the_median_of_the_previous_window_and_mad_scales_z() -> None:
    # Previous 60 readings alternate 20/22: median 21, MAD 1 -> scale 1.4826.
    values = [20.0, 22.0] * 30 + [21.0 + 1.4826 * 6.1]
    out = robust_zscore(series(values), hours=None, detected_at=NOW)
    assert out["event_id"].to_list() == ["dev-1-60"]
    assert out["expected"][0] == pytest.approx(21.0)
    assert out["score"][0] == pytest.approx(6.1 / 12, abs=1e-3)
    just_below = [20.0, 22.0] * 30 + [21.0 + 1.4826 * 5.9]
    assert robust_zscore(series(just_below), hours=None, detected_at=NOW).height == 0


def test_a_flat_history_gives_a_finite_z_tiny_noise_passes_and_a_jump_is_flagged() -> None:
    flat = [21.4] * 80
    tiny = robust_zscore(series([*flat, 21.41]), hours=None, detected_at=NOW)
    assert tiny.height == 0
    jump = robust_zscore(series([*flat, 97.3]), hours=None, detected_at=NOW)
    assert jump.height == 1
    assert np.isfinite(jump["score"][0]) and jump["score"][0] == 1.0
    # More than half equal but the rest varying: MAD 0, the mean absolute deviation (0.1,
    # scale 0.125) takes over; the 0.1 % floor alone (0.021) would flag 21.3 at z = 14.
    history = [21.0, 21.3, 21.0, 20.8, 21.0]

    def flagged(value: float) -> int:
        frame = series([*history, value])
        return robust_zscore(frame, hours=None, window=5, min_history=5, detected_at=NOW).height

    assert (flagged(21.3), flagged(22.0)) == (0, 1)


def test_exact_repeats_do_not_shrink_the_scale_after_a_stuck_run() -> None:
    values = noise(300, seed=4)
    values[100:120] = values[99]  # stuck for 20 readings, then normal noise again
    values[150] = 21.0 + 4.5 * 0.3  # 4.5 sigma: normal-ish, within 60 readings of the run
    assert robust_zscore(series(values), hours=None, detected_at=NOW).height == 0


def test_readings_with_too_little_history_are_not_evaluated() -> None:
    values = noise(100)
    values[10] = 40.0
    values[30] = 40.0
    out = robust_zscore(series(values), hours=None, min_history=20, detected_at=NOW)
    assert out["event_id"].to_list() == ["dev-1-30"]


def test_hours_select_the_output_and_the_context_before_them_is_used_not_output() -> None:
    values = noise(180)
    values[[30, 70, 130]] = 40.0  # minutes 30, 70 (hour 1) and 130 (hour 2)
    frame = series(values)
    out = robust_zscore(frame, hours=["2026-03-01-01:00"], detected_at=NOW)
    assert out["event_id"].to_list() == ["dev-1-70"]
    assert robust_zscore(frame, hours=[], detected_at=NOW).height == 0
    assert robust_zscore(frame, hours=None, detected_at=NOW).height == 3


def test_series_do_not_see_each_other_and_unit_is_optional() -> None:
    hot = series(noise(100, seed=1, mu=80.0), device="dev-hot")
    cold = series(noise(100, seed=2), device="dev-cold")
    both = pl.concat([hot, cold]).sample(fraction=1.0, shuffle=True, seed=3)
    assert robust_zscore(both, hours=None, detected_at=NOW).height == 0
    out = robust_zscore(series([*noise(80), 40.0]).drop("unit"), hours=None, detected_at=NOW)
    assert out["reason"][0].startswith("value 40.0 is ")


def test_output_fits_the_schema_and_partitions_by_event_time() -> None:
    values = noise(200)
    values[150] = 40.0
    out = robust_zscore(series(values), hours=None, detected_at=NOW)
    assert to_arrow(out, SENSOR_ANOMALIES_SCHEMA).schema == SENSOR_ANOMALIES_SCHEMA
    row = out.row(0, named=True)
    assert (row["event_date"], row["event_hour"]) == (T0.date(), 2)
    empty = robust_zscore(series(noise(200)), hours=None, detected_at=NOW)
    assert to_arrow(empty, SENSOR_ANOMALIES_SCHEMA).num_rows == 0


def test_bad_hour_keys_and_windows_are_refused() -> None:
    assert hour_starts(["2026-03-01-10:00"]).to_list() == [datetime(2026, 3, 1, 10, tzinfo=UTC)]
    for bad in ("2026-03-01T10:00", "2026-03-01-10:30"):
        with pytest.raises(ValueError, match="hour partition key"):
            hour_starts([bad])
    with pytest.raises(ValueError, match="window"):
        robust_zscore(series(noise(10)), hours=None, window=1, detected_at=NOW)


# ------------------------------------------------------------------ isolation forest


@pytest.fixture(scope="module")
def scenario() -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(all readings, the evaluated day's labelled readings, its hour keys)."""
    data = synthetic(seed=0)
    split = T0 + timedelta(hours=23)
    return data, data.filter(pl.col("event_time") >= split), hour_keys(split, 24)


def test_model_records_its_training_and_its_version_is_deterministic(
    scenario: tuple[pl.DataFrame, pl.DataFrame, list[str]],
) -> None:
    data = scenario[0].filter(pl.col("event_time") < T0 + timedelta(hours=12))
    model = train_isolation_forest(data, trained_at=NOW, seed=7)
    again = train_isolation_forest(data, trained_at=NOW + timedelta(hours=1), seed=7)
    assert model.version == again.version and model.version.startswith("if-")
    assert model.threshold == again.threshold
    assert train_isolation_forest(data, trained_at=NOW, seed=8).version != model.version
    other = train_isolation_forest(data.head(data.height - 100), trained_at=NOW, seed=7)
    assert other.version != model.version
    assert model.trained_at == NOW
    assert model.training_window[0] >= T0 and model.training_window[1] < T0 + timedelta(hours=12)
    assert model.n_readings == data.height - 20 * data.select("device_id", "metric").n_unique()
    assert model.features == ("z", "z_lagged", "log_spread")
    assert 0.5 < model.threshold < 1.0
    with pytest.raises(ValueError, match="to train"):
        train_isolation_forest(data.head(50), trained_at=NOW)


def test_isolation_forest_rows_name_the_strongest_feature_and_fit_the_schema(
    scenario: tuple[pl.DataFrame, pl.DataFrame, list[str]],
) -> None:
    data, labelled, hours = scenario
    model = train_isolation_forest(
        data.filter(pl.col("event_time") < T0 + timedelta(hours=23)), trained_at=NOW
    )
    out = isolation_forest(data, model, hours=hours, detected_at=NOW)
    assert to_arrow(out, SENSOR_ANOMALIES_SCHEMA).schema == SENSOR_ANOMALIES_SCHEMA
    assert set(out["method"]) == {ISOLATION_FOREST}
    assert out.join(labelled, on="event_id", how="anti").height == 0  # only the hours asked
    assert ((out["score"] > model.threshold) & (out["score"] <= 1.0)).all()
    labels = dict(zip(labelled["event_id"], labelled["label"], strict=True))
    stuck = out.filter(pl.col("event_id").replace_strict(labels, default=None) == "anomaly:stuck")
    assert stuck.height > 0
    assert stuck["reason"].str.contains("readings vary by 0.0 robust SDs").all()
    assert stuck["reason"].str.contains(model.version).all()
    assert isolation_forest(data, model, hours=[], detected_at=NOW).height == 0


def test_pure_noise_is_rarely_flagged_by_either_method() -> None:
    rng = np.random.default_rng(11)
    frames = [series(np.round(rng.normal(21, 0.3, 3000), 2), device=f"d{i}") for i in range(10)]
    data = pl.concat(frames)
    model = train_isolation_forest(data, trained_at=NOW)
    assert robust_zscore(data, hours=None, detected_at=NOW).height <= 1
    assert isolation_forest(data, model, hours=None, detected_at=NOW).height <= 0.001 * data.height


# ------------------------------------------------------------------ measured against labels


def test_both_methods_measured_against_the_labelled_scenarios(
    scenario: tuple[pl.DataFrame, pl.DataFrame, list[str]],
) -> None:
    data, labelled, hours = scenario
    history = data.filter(pl.col("event_time") < T0 + timedelta(hours=23))
    model = train_isolation_forest(history, trained_at=NOW)
    anomalies = pl.concat(
        [
            robust_zscore(data, hours=hours, detected_at=NOW),
            isolation_forest(data, model, hours=hours, detected_at=NOW),
        ]
    )
    got = score_against_labels(anomalies, labelled)
    assert {kind for _, kind in got} == {*KINDS, "all"}
    assert got[(ROBUST_ZSCORE, "spike")]["f1"] >= 0.95
    assert got[(ROBUST_ZSCORE, "level_shift")]["f1"] >= 0.8
    best_stuck = max(got[(m, "stuck")]["f1"] for m in (ROBUST_ZSCORE, ISOLATION_FOREST))
    assert best_stuck >= 0.8
    # What each method is for: the z-score cannot see a stuck sensor, the forest does.
    assert got[(ROBUST_ZSCORE, "stuck")]["recall"] < 0.1
    assert got[(ISOLATION_FOREST, "stuck")]["f1"] >= 0.8
    assert got[(ISOLATION_FOREST, "level_shift")]["f1"] >= 0.8
    assert got[(ISOLATION_FOREST, "all")]["precision"] >= 0.95
    assert got[(ROBUST_ZSCORE, "all")]["precision"] >= 0.95


def test_score_against_labels_counts_and_attributes_false_positives() -> None:
    labelled = series(noise(300)).with_columns(pl.lit(None, dtype=pl.String).alias("label"))
    labelled = labelled.with_columns(
        pl.when(pl.col("event_id").is_in(["dev-1-100", "dev-1-200"]))
        .then(pl.lit("anomaly:spike"))
        .when(pl.col("event_id").is_in([f"dev-1-{i}" for i in range(150, 160)]))
        .then(pl.lit("anomaly:stuck"))
        .otherwise(pl.col("label"))
        .alias("label")
    )

    def flags(ids: list[int]) -> pl.DataFrame:
        return pl.DataFrame({"event_id": [f"dev-1-{i}" for i in ids], "method": ROBUST_ZSCORE})

    # 100: spike TP, 200: spike FN, 150-154: stuck TP (155-159 FN), 101: FP next to a spike,
    # 20: FP far from every scenario (charged to every kind), 999: not an evaluated reading.
    got = score_against_labels(flags([100, 101, 150, 151, 152, 153, 154, 20, 999]), labelled)
    spike, stuck = got[(ROBUST_ZSCORE, "spike")], got[(ROBUST_ZSCORE, "stuck")]
    assert (spike["tp"], spike["fp"], spike["fn"]) == (1, 2, 1)  # 101 nearby + 20 far
    assert (stuck["tp"], stuck["fp"], stuck["fn"]) == (5, 1, 5)  # 20 far
    assert spike["precision"] == pytest.approx(1 / 3) and spike["recall"] == 0.5
    assert spike["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    total = got[(ROBUST_ZSCORE, "all")]
    assert (total["tp"], total["fp"], total["fn"]) == (6, 2, 6)
    # Without series columns every false positive is charged to every kind; a method that
    # flagged nothing scores 0.
    bare = score_against_labels(flags([100, 101]), labelled.select("event_id", "label"))
    assert bare[(ROBUST_ZSCORE, "stuck")]["fp"] == 1
    assert bare[(ISOLATION_FOREST, "spike")] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "tp": 0,
        "fp": 0,
        "fn": 2,
    }
