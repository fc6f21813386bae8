"""``gold/sensor_anomalies`` over a real lake: trailing context, the model, late readings."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest
from test_layers_fraud import NOW, OPEN, SETTINGS

from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import IngestEngine
from tidelake.lake import Lake
from tidelake.layers import refresh_silver
from tidelake.layers.anomalies import SENSOR_ANOMALIES_PATH, SENSORS, Anomalies, stale_anomaly_hours
from tidelake.layers.hours import key_of
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings


class Plant:
    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.kafka = FakeKafka()
        self.kafka.create_topic(SENSORS.name, partitions=1)
        self.engine = IngestEngine(
            lake,
            KafkaSettings(consumer_group="anomalies"),
            IngestSettings(quiet_seconds=0.02),
            consumer_factory=self.kafka.consumer_factory,
        )
        self.rng = random.Random(3)

    def reading(self, at_seconds: float, value: float | None = None) -> str:
        event_id = str(uuid.uuid4())
        at = OPEN + timedelta(seconds=at_seconds)
        payload = {
            "event_id": event_id,
            "event_type": "sensor_reading",
            "event_time": at.isoformat(),
            "device_id": "d1",
            "site": "s1",
            "metric": "temperature",
            "value": value if value is not None else 21.0 + self.rng.gauss(0, 0.2),
            "unit": "C",
        }
        self.kafka.produce(SENSORS.name, orjson.dumps(payload), key=b"d1")
        return event_id

    def settle(self) -> None:
        self.engine.ingest_topic(SENSORS)
        refresh_silver(self.lake, SENSORS, settings=SETTINGS, now=NOW)


@pytest.fixture
def plant(tmp_path: Path) -> Plant:
    return Plant(Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake"))))


def found(lake: Lake) -> pl.DataFrame:
    table = lake.open(SENSOR_ANOMALIES_PATH)
    assert table is not None
    frame = pl.from_arrow(table.to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_a_spike_is_found_by_both_methods_with_history_from_the_hours_before(plant: Plant) -> None:
    for i in range(-3 * 360, 0):  # three hours of readings every 10 s before the open hour
        plant.reading(i * 10.0)
    for i in range(60):
        plant.reading(i * 10.0)
    spike = plant.reading(605.0, value=35.0)  # ~70 sigma
    plant.settle()
    anomalies = Anomalies()

    result = anomalies.refresh(
        plant.lake, [key_of(OPEN.date(), OPEN.hour)], settings=SETTINGS, now=NOW
    )

    assert key_of(OPEN.date(), OPEN.hour) in result.hour_keys
    rows = found(plant.lake)
    hits = rows.filter(pl.col("event_id") == spike)
    assert set(hits["method"]) == {"robust_zscore", "isolation_forest"}
    assert hits["expected"].to_list()[0] == pytest.approx(21.0, abs=0.3)
    assert "robust SDs" in hits.filter(pl.col("method") == "robust_zscore")["reason"][0]
    normal = rows.filter((pl.col("event_id") != spike) & (pl.col("event_time") >= OPEN))
    assert normal.height <= 1, "normal noise is (almost) never flagged"
    meta = anomalies.model_metadata()
    assert str(meta["model_version"]).startswith("if-")
    assert int(meta["model_training_readings"]) >= 500


def test_a_late_reading_makes_its_hour_and_the_following_ones_stale(plant: Plant) -> None:
    for i in range(60):
        plant.reading(i * 10.0)
    plant.settle()
    Anomalies().refresh(plant.lake, settings=SETTINGS, now=NOW)
    assert stale_anomaly_hours(plant.lake, NOW).hours == []

    plant.reading(-2 * 3600.0)  # two hours late
    plant.settle()

    before = OPEN - timedelta(hours=2)
    expected = [
        key_of((before + timedelta(hours=n)).date(), (before + timedelta(hours=n)).hour)
        for n in range(3)
    ]
    assert stale_anomaly_hours(plant.lake, NOW).hours == expected
