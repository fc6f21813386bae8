"""The one place Tidelake's Dagster objects are wired into a code location.

Modules under assets/, resources/ and sensors/ only define; this module assembles them for the
environment named by ``TIDELAKE_ENV`` (see :mod:`pipeline_defs.environment`), the ingestion
model named by ``TIDELAKE_INGEST_MODEL`` (see :func:`ingest_sensors`) and the derived layers'
settings (``TIDELAKE_PARTITIONS_START``, SLAs, lateness; see :func:`derived_layers`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import NamedTuple

import dagster as dg

from assets.bronze import build_bronze_layer
from assets.bronze.audit import audit_check_keys, build_audit_checks
from assets.dbt import DBT_RESOURCE_KEY, build_dbt_assets, dbt_resource
from assets.gold import build_freshness_checks, build_gold_assets
from assets.gold.analytics import build_analytics_assets, build_cohort_asset
from assets.silver import build_silver_assets
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
from pipeline_defs.maintenance import maintenance_job_and_schedule
from pipeline_defs.partitions import daily_partitions, hourly_partitions
from pipeline_defs.refresh import (
    REFRESH_JOB_NAME,
    WAREHOUSE_JOB_NAME,
    cohorts_job_and_schedule,
    refresh_job,
    warehouse_job,
)
from resources.warehouse import warehouse_resource
from sensors import (
    build_alert_sensors,
    build_kafka_sensor,
    build_lag_sensor,
    build_pending_topics_sensor,
    build_refresh_sensor,
)
from sensors.refresh import WORKER_GRACE_SECONDS
from sensors.warehouse import build_warehouse_sensor
from tidelake.contracts import TOPICS, TopicContract
from tidelake.layers.gold import EVENTS_PER_HOUR_PATH, EVENTS_PER_MINUTE_PATH
from tidelake.settings import RefreshSettings, ingest_model_from_env
from tidelake.transform.fraud import FraudThresholds

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


class DerivedLayers(NamedTuple):
    """Silver, gold and the dbt warehouse: assets, checks, the refresh job and its sensor."""

    assets: list[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]
    jobs: list[AssetJob]
    """``refresh_derived`` (silver + gold) and ``refresh_warehouse`` (dbt)."""
    sensors: list[dg.SensorDefinition]


def derived_layers(
    contracts: list[TopicContract],
    settings: RefreshSettings,
    status: dg.DefaultSensorStatus,
    worker_refreshes: bool = False,
    thresholds: FraudThresholds | None = None,
) -> DerivedLayers:
    """Silver per topic and gold, hourly partitioned from ``settings.partitions_start``, and the
    dbt marts over them (unpartitioned: a run with a partition range rebuilds the days of its
    range, see :mod:`assets.dbt`); the ``refresh_derived`` job over all of them and the
    touched-partitions sensor that launches it (after a grace period when ``worker_refreshes``:
    the ingestion worker refreshes silver and gold itself, :mod:`pipeline_defs.derive_worker`)."""
    hourly = hourly_partitions(settings)
    thresholds = thresholds or FraudThresholds()
    with warnings.catch_warnings():
        # `backfill_policy` is a beta parameter in Dagster 1.13; a single-run backfill is what a
        # range refresh (one Delta commit per table) needs, so the notice is only noise at load.
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = [
            *build_silver_assets(contracts, hourly, settings),
            *build_gold_assets(contracts, hourly, settings),
            *build_analytics_assets(hourly, settings, thresholds),
            build_cohort_asset(daily_partitions(settings)),
        ]
    warehouse = build_dbt_assets()
    marts = [key for a in warehouse for key in a.keys]
    checks = [build_freshness_checks(contracts, settings)]
    job = refresh_job(contracts)
    grace = WORKER_GRACE_SECONDS if worker_refreshes else 0.0
    sensor = build_refresh_sensor(
        contracts, REFRESH_JOB_NAME, hourly, settings, status, grace_seconds=grace
    )
    inputs = [*(c.silver_path for c in contracts), EVENTS_PER_MINUTE_PATH, EVENTS_PER_HOUR_PATH]
    marts_job = warehouse_job(marts)
    marts_sensor = build_warehouse_sensor(WAREHOUSE_JOB_NAME, inputs, status)
    assets.extend(warehouse)
    return DerivedLayers(assets, checks, [job, marts_job], [sensor, marts_sensor])


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
    maintenance_job, maintenance_schedule = maintenance_job_and_schedule(environment)
    cohorts_job, cohorts_schedule = cohorts_job_and_schedule(schedule_status(environment))
    status = sensor_status(environment)
    sensors = ingest_sensors(model, contracts, status)
    refresh_settings = RefreshSettings.from_env(env)
    derived = derived_layers(
        contracts,
        refresh_settings,
        status,
        worker_refreshes=model == "worker" and refresh_settings.worker_refresh,
        thresholds=FraudThresholds.from_env(os.environ if env is None else env),
    )
    sensors.extend(derived.sensors)
    sensors.extend(build_alert_sensors(dg.DefaultSensorStatus.RUNNING))
    fallback = dg.ScheduleDefinition(
        name="ingest_bronze_fallback",
        cron_schedule=FALLBACK_SCHEDULE_CRON,
        job=everything,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Safety net if sensors are off: drain every topic every 15 minutes.",
    )
    return dg.Definitions(
        assets=[*specs, *bronze, *derived.assets],
        asset_checks=[*audit_checks, *derived.checks],
        jobs=[
            everything,
            *topic_jobs.values(),
            audit_job,
            *derived.jobs,
            maintenance_job,
            cohorts_job,
        ],
        sensors=sensors,
        schedules=[fallback, audit_schedule, maintenance_schedule, cohorts_schedule],
        resources={
            **build_resources(env),
            DBT_RESOURCE_KEY: dbt_resource(),
            "warehouse": warehouse_resource(env),
        },
        metadata={"tidelake/environment": environment, "tidelake/ingest_model": model},
    )


defs = build_definitions()
