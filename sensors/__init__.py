"""Thin, cursor-driven sensors: Kafka micro-batches (per ingestion model) with lag observations
and backoff, the touched-partitions refresh of silver and gold, alerts."""

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
    ALL_TOPICS_TAG_VALUE,
    OBSERVE_INTERVAL_SECONDS,
    PENDING_SENSOR_NAME,
    build_kafka_sensor,
    build_lag_sensor,
    build_pending_topics_sensor,
    decide,
    decide_pending,
    lag_metadata,
    observe,
    observe_only,
    pending_run_key,
    retry_delay,
    run_key,
    sensor_name,
)
from sensors.refresh import (
    REFRESH_SENSOR_NAME,
    REFRESH_TAG,
    REFRESH_TAG_VALUE,
    build_refresh_sensor,
    decide_refresh,
)
from sensors.runs import FailureStreak, failure_streak

__all__ = [
    "ALL_TOPICS_TAG_VALUE",
    "FAILURE_SENSOR_NAME",
    "OBSERVE_INTERVAL_SECONDS",
    "PENDING_SENSOR_NAME",
    "RECOVERY_SENSOR_NAME",
    "REFRESH_SENSOR_NAME",
    "REFRESH_TAG",
    "REFRESH_TAG_VALUE",
    "FailureStreak",
    "build_alert_sensors",
    "build_failure_sensor",
    "build_kafka_sensor",
    "build_lag_sensor",
    "build_pending_topics_sensor",
    "build_recovery_sensor",
    "build_refresh_sensor",
    "decide",
    "decide_pending",
    "decide_refresh",
    "failure_payload",
    "failure_streak",
    "lag_metadata",
    "observe",
    "observe_only",
    "pending_run_key",
    "recovery_payload",
    "retry_delay",
    "run_key",
    "sensor_name",
]
