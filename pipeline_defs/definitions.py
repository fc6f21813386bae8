"""The one place Tidelake's Dagster objects are wired into a code location.

Modules under assets/, resources/ and sensors/ only define; this module assembles them for the
environment named by ``TIDELAKE_ENV`` (see :mod:`pipeline_defs.environment`) and the ingestion
model named by ``TIDELAKE_INGEST_MODEL`` (see :func:`ingest_sensors`).
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
from pipeline_defs.jobs import (
    ALL_TOPICS_JOB_NAME,
    AssetJob,
    all_topics_job,
    ingest_job_name,
    topic_ingest_job,
)
from sensors import (
    build_alert_sensors,
    build_kafka_sensor,
    build_lag_sensor,
    build_pending_topics_sensor,
)
from tidelake.contracts import TOPICS, TopicContract
from tidelake.settings import ingest_model_from_env

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


def ingest_sensors(
    model: str, contracts: list[TopicContract], status: dg.DefaultSensorStatus
) -> list[dg.SensorDefinition]:
    """The Kafka sensors of an ingestion model (``TIDELAKE_INGEST_MODEL``).

    * ``runs``: one sensor per topic, each requesting runs of its ``ingest_<table>`` job;
    * ``tick``: one sensor, ``kafka_pending_topics_sensor``, requesting one ``ingest_bronze`` run
      per tick for every pending topic;
    * ``worker``: one observe-only sensor per topic (lag); ``tidelake ingest --follow`` ingests.
    """
    if model == "runs":
        return [build_kafka_sensor(c, ingest_job_name(c), status) for c in contracts]
    if model == "tick":
        return [build_pending_topics_sensor(contracts, ALL_TOPICS_JOB_NAME, status)]
    if model == "worker":
        return [build_lag_sensor(c, status) for c in contracts]
    raise ValueError(f"unknown ingestion model {model!r}")


def build_definitions(env: Mapping[str, str] | None = None) -> dg.Definitions:
    """Definitions for the environment in ``env`` (default: the process environment)."""
    environment = current_environment(env)
    model = ingest_model_from_env(env)
    contracts = list(TOPICS.values())
    specs, bronze = build_bronze_layer(contracts)
    audit_checks = build_audit_checks(contracts)
    audit = dg.AssetSelection.checks(*audit_check_keys(contracts))
    topic_jobs = {c.name: topic_ingest_job(c) for c in contracts}
    everything = all_topics_job(contracts)
    audit_job, audit_schedule = audit_job_and_schedule(audit, environment)
    status = sensor_status(environment)
    sensors = ingest_sensors(model, contracts, status)
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
        metadata={"tidelake/environment": environment, "tidelake/ingest_model": model},
    )


defs = build_definitions()
