"""The one place Tidelake's Dagster objects are wired into a code location.

Modules under assets/, resources/ and sensors/ only define; this module assembles them for the
environment named by ``TIDELAKE_ENV`` (see :mod:`pipeline_defs.environment`).
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from assets.bronze import build_bronze_layer
from pipeline_defs.environment import build_resources, current_environment, sensor_status
from pipeline_defs.jobs import all_topics_job, ingest_job_name, topic_ingest_job
from sensors import build_alert_sensors, build_kafka_sensor
from tidelake.contracts import TOPICS

FALLBACK_SCHEDULE_CRON = "*/15 * * * *"


def build_definitions(env: Mapping[str, str] | None = None) -> dg.Definitions:
    """Definitions for the environment in ``env`` (default: the process environment)."""
    environment = current_environment(env)
    contracts = list(TOPICS.values())
    specs, bronze = build_bronze_layer(contracts)
    topic_jobs = {c.name: topic_ingest_job(c) for c in contracts}
    everything = all_topics_job(contracts)
    status = sensor_status(environment)
    sensors = [build_kafka_sensor(c, ingest_job_name(c), status) for c in contracts]
    sensors.extend(build_alert_sensors(dg.DefaultSensorStatus.RUNNING))
    fallback = dg.ScheduleDefinition(
        name="ingest_bronze_fallback",
        cron_schedule=FALLBACK_SCHEDULE_CRON,
        job=everything,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Safety net if sensors are off: drain every topic every 15 minutes.",
    )
    return dg.Definitions(
        assets=[*specs, *bronze],
        jobs=[everything, *topic_jobs.values()],
        sensors=sensors,
        schedules=[fallback],
        resources=build_resources(env),
        metadata={"tidelake/environment": environment},
    )


defs = build_definitions()
