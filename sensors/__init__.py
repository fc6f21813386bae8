"""Thin, cursor-driven sensors: Kafka micro-batches with lag observations, failure alerts."""

from sensors.alerts import FAILURE_SENSOR_NAME, build_failure_sensor, failure_payload
from sensors.kafka import build_kafka_sensor, decide, lag_metadata, run_key, sensor_name

__all__ = [
    "FAILURE_SENSOR_NAME",
    "build_failure_sensor",
    "build_kafka_sensor",
    "decide",
    "failure_payload",
    "lag_metadata",
    "run_key",
    "sensor_name",
]
