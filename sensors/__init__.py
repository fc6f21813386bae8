"""Thin, cursor-driven sensors: Kafka micro-batches with lag observations and backoff, alerts."""

from sensors.alerts import (
    FAILURE_SENSOR_NAME,
    RECOVERY_SENSOR_NAME,
    build_alert_sensors,
    build_failure_sensor,
    build_recovery_sensor,
    failure_payload,
    recovery_payload,
)
from sensors.kafka import (
    build_kafka_sensor,
    decide,
    lag_metadata,
    retry_delay,
    run_key,
    sensor_name,
)
from sensors.runs import FailureStreak, failure_streak

__all__ = [
    "FAILURE_SENSOR_NAME",
    "RECOVERY_SENSOR_NAME",
    "FailureStreak",
    "build_alert_sensors",
    "build_failure_sensor",
    "build_kafka_sensor",
    "build_recovery_sensor",
    "decide",
    "failure_payload",
    "failure_streak",
    "lag_metadata",
    "recovery_payload",
    "retry_delay",
    "run_key",
    "sensor_name",
]
