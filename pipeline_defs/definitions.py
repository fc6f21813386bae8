"""The one place Tidelake's Dagster objects are wired into a code location.

Modules under assets/, resources/ and sensors/ only define; this module assembles them for the
environment named by ``TIDELAKE_ENV`` (see :mod:`pipeline_defs.environment`).
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from assets.bronze import build_bronze_layer
from assets.bronze.audit import audit_check_keys, build_audit_checks
from pipeline_defs.environment import (
    Environment,
    build_resources,
    current_environment,
    schedule_status,
    sensor_status,
)
from pipeline_defs.jobs import AssetJob, all_topics_job, ingest_job_name, topic_ingest_job
from sensors import build_alert_sensors, build_kafka_sensor
from tidelake.contracts import TOPICS

FALLBACK_SCHEDULE_CRON = "*/15 * * * *"
AUDIT_JOB_NAME = "bronze_audit"
AUDIT_SCHEDULE_NAME = "bronze_audit_daily"
AUDIT_SCHEDULE_CRON = "0 3 * * *"
"""03:00 UTC: a quiet hour, after the previous UTC day has closed."""


def audit_job_and_schedule(
    audit: dg.AssetSelection, environment: Environment
) -> tuple[AssetJob, dg.ScheduleDefinition]:
    """The check-only ``bronze_audit`` job and its daily schedule (running where sensors run)."""
    job = dg.define_asset_job(
        AUDIT_JOB_NAME,
        selection=audit,
        description=(
            "Whole-table audit of every bronze table: coordinates unique, offsets contiguous "
            "over the whole history (WARN checks; reads no Kafka, writes nothing)."
        ),
        tags={"tidelake/layer": "bronze"},
    )
    schedule = dg.ScheduleDefinition(
        name=AUDIT_SCHEDULE_NAME,
        cron_schedule=AUDIT_SCHEDULE_CRON,
        execution_timezone="UTC",
        job=job,
        default_status=schedule_status(environment),
        description="Daily at 03:00 UTC: audit every bronze table in full (job bronze_audit).",
    )
    return job, schedule


def build_definitions(env: Mapping[str, str] | None = None) -> dg.Definitions:
    """Definitions for the environment in ``env`` (default: the process environment)."""
    environment = current_environment(env)
    contracts = list(TOPICS.values())
    specs, bronze = build_bronze_layer(contracts)
    audit_checks = build_audit_checks(contracts)
    audit = dg.AssetSelection.checks(*audit_check_keys(contracts))
    topic_jobs = {c.name: topic_ingest_job(c) for c in contracts}
    everything = all_topics_job(contracts)
    audit_job, audit_schedule = audit_job_and_schedule(audit, environment)
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
        asset_checks=audit_checks,
        jobs=[everything, *topic_jobs.values(), audit_job],
        sensors=sensors,
        schedules=[fallback, audit_schedule],
        resources=build_resources(env),
        metadata={"tidelake/environment": environment},
    )


defs = build_definitions()
