"""Guards for the whole code location: it loads with nothing set and has the expected shape
in every ingestion model."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.bronze import BRONZE_CHECK_NAMES, QUARANTINE_KEY, bronze_key, kafka_key
from assets.bronze.audit import AUDIT_CHECK_NAMES
from pipeline_defs.definitions import (
    AUDIT_JOB_NAME,
    AUDIT_SCHEDULE_CRON,
    AUDIT_SCHEDULE_NAME,
    build_definitions,
)
from pipeline_defs.environment import current_environment
from resources import IngestResource, KafkaResource, LakeResource
from sensors import OBSERVE_INTERVAL_SECONDS, PENDING_SENSOR_NAME
from tidelake.contracts import TOPICS
from tidelake.dagster_home import INGEST_TOPIC_TAG
from tidelake.settings import DEFAULT_LAKE_URI, ConfigError, IngestSettings

EXPECTED_KEYS = {
    "bronze/app_interactions",
    "bronze/infra_sensor_readings",
    "bronze/shop_clicks",
    "bronze/shop_page_views",
    "bronze/shop_purchases",
    "bronze/shop_searches",
    "kafka/app_interactions",
    "kafka/infra_sensor_readings",
    "kafka/shop_clicks",
    "kafka/shop_page_views",
    "kafka/shop_purchases",
    "kafka/shop_searches",
    "quarantine",
    "silver/app_interactions",
    "silver/infra_sensor_readings",
    "silver/shop_clicks",
    "silver/shop_page_views",
    "silver/shop_purchases",
    "silver/shop_searches",
    "gold/events_per_minute",
    "gold/events_per_hour",
    "gold/fraud_flags",
    "gold/sensor_anomalies",
    "gold/user_activity",
    "gold/cohort_retention",
    "gold/top_products_last_hour",
    "marts/daily_kpis",
    "marts/events_daily",
    "marts/funnel_daily",
    "marts/sensor_hourly",
    "staging/stg_app_interactions",
    "staging/stg_events_per_hour",
    "staging/stg_infra_sensor_readings",
    "staging/stg_shop_clicks",
    "staging/stg_shop_page_views",
    "staging/stg_shop_purchases",
    "staging/stg_shop_searches",
}


@pytest.fixture
def defs(clean_env: Path) -> dg.Definitions:
    return build_definitions()


def test_the_module_loads_and_validates_with_no_environment(clean_env: Path) -> None:
    import importlib

    import pipeline_defs.definitions as module

    module = importlib.reload(module)
    dg.Definitions.validate_loadable(module.defs)


def test_asset_keys_snapshot(defs: dg.Definitions) -> None:
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == EXPECTED_KEYS


def test_every_topic_has_a_bronze_asset_fed_by_its_kafka_topic(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for contract in TOPICS.values():
        bronze = graph.get(bronze_key(contract))
        assert bronze.parent_keys == {kafka_key(contract)}
        assert bronze.group_name == "bronze"
        assert bronze.description == contract.description
        assert graph.get(kafka_key(contract)).group_name == "kafka"
        assert not graph.get(kafka_key(contract)).is_materializable
    assert graph.get(QUARANTINE_KEY).parent_keys == {kafka_key(c) for c in TOPICS.values()}


def test_every_bronze_asset_has_its_checks_and_column_schema(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    checks = graph.asset_check_keys
    for contract in TOPICS.values():
        key = bronze_key(contract)
        check_names = {c.name for c in checks if c.asset_key == key}
        assert check_names == set(BRONZE_CHECK_NAMES) | set(AUDIT_CHECK_NAMES)
        schema = graph.get(key).metadata["dagster/column_schema"]
        names = [c.name for c in schema.columns]
        assert names == contract.bronze_schema().names


def test_jobs_carry_the_topic_concurrency_tag(defs: dg.Definitions) -> None:
    for contract in TOPICS.values():
        job = defs.resolve_job_def(f"ingest_{contract.table_name}")
        assert job.run_tags[INGEST_TOPIC_TAG] == contract.name
    assert INGEST_TOPIC_TAG in defs.resolve_job_def("ingest_bronze").run_tags


def test_the_audit_checks_never_block_and_never_run_with_ingestion(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for contract in TOPICS.values():
        for name in AUDIT_CHECK_NAMES:
            spec = graph.get_check_spec(dg.AssetCheckKey(bronze_key(contract), name))
            assert not spec.blocking, "an old problem must not block new ingestion"
        # Selecting an asset selects every check on it: the O(history) audit would run with
        # every micro-batch unless the ingest jobs leave it out.
        nodes = {n.name for n in defs.resolve_job_def(f"ingest_{contract.table_name}").nodes}
        assert nodes == {f"bronze__{contract.table_name}"}
    everything = {n.name for n in defs.resolve_job_def("ingest_bronze").nodes}
    assert not {n for n in everything if n.startswith("audit_")}


def test_the_audit_job_runs_only_the_audit_checks_daily(defs: dg.Definitions) -> None:
    job = defs.resolve_job_def(AUDIT_JOB_NAME)
    assert {n.name for n in job.nodes} == {f"audit_{c.table_name}" for c in TOPICS.values()}
    assert not job.asset_layer.selected_asset_keys, "a check-only job materializes nothing"
    schedule = defs.resolve_schedule_def(AUDIT_SCHEDULE_NAME)
    assert schedule.job_name == AUDIT_JOB_NAME
    assert schedule.cron_schedule == AUDIT_SCHEDULE_CRON == "0 3 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def model_defs(model: str) -> dg.Definitions:
    return build_definitions({"TIDELAKE_INGEST_MODEL": model})


def kafka_sensors(defs: dg.Definitions) -> dict[str, dg.SensorDefinition]:
    """The ingestion sensors by name (everything but the alert sensors)."""
    return {s.name: s for s in defs.sensors or [] if s.name.startswith("kafka_")}


def targets(sensor: dg.SensorDefinition) -> list[str]:
    """The jobs a sensor can request runs of (none: it can request no run)."""
    return [t.job_name for t in sensor.targets]


def test_the_runs_model_has_one_run_requesting_sensor_per_topic(clean_env: Path) -> None:
    defs = model_defs("runs")

    sensors = kafka_sensors(defs)

    assert set(sensors) == {f"kafka_{c.table_name}_sensor" for c in TOPICS.values()}
    for contract in TOPICS.values():
        sensor = sensors[f"kafka_{contract.table_name}_sensor"]
        assert targets(sensor) == [f"ingest_{contract.table_name}"]
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.minimum_interval_seconds == 3


def test_the_tick_model_has_one_sensor_requesting_ingest_bronze(clean_env: Path) -> None:
    defs = model_defs("tick")

    [(name, sensor)] = kafka_sensors(defs).items()

    assert name == PENDING_SENSOR_NAME == "kafka_pending_topics_sensor"
    assert targets(sensor) == ["ingest_bronze"]
    assert sensor.minimum_interval_seconds == 3
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_job_def("ingest_bronze").run_tags[INGEST_TOPIC_TAG] == "*all*"


def test_the_worker_model_has_observe_only_sensors_per_topic(clean_env: Path) -> None:
    defs = model_defs("worker")

    sensors = kafka_sensors(defs)

    assert set(sensors) == {f"kafka_{c.table_name}_sensor" for c in TOPICS.values()}
    for sensor in sensors.values():
        assert targets(sensor) == [], "the worker ingests; no sensor may request a run"
        assert sensor.minimum_interval_seconds == OBSERVE_INTERVAL_SECONDS
        assert "the ingestion worker" in (sensor.description or "")


def test_the_default_model_is_the_worker(defs: dg.Definitions) -> None:
    assert all(not targets(s) for s in kafka_sensors(defs).values())
    assert defs.metadata["tidelake/ingest_model"].value == "worker"


@pytest.mark.parametrize("model", ["runs", "tick", "worker"])
def test_every_model_loads_with_the_alerts_jobs_and_fallback_schedule(
    clean_env: Path, model: str
) -> None:
    defs = model_defs(model)

    dg.Definitions.validate_loadable(defs)
    names = {s.name for s in defs.sensors or []}
    assert {"run_failure_alert_sensor", "run_recovery_alert_sensor"} <= names
    fallback = defs.resolve_schedule_def("ingest_bronze_fallback")
    assert fallback.job_name == "ingest_bronze"
    assert fallback.default_status == dg.DefaultScheduleStatus.STOPPED
    for contract in TOPICS.values():
        assert defs.resolve_job_def(f"ingest_{contract.table_name}")


def test_the_refresh_sensor_launches_refresh_derived_every_few_seconds(
    defs: dg.Definitions,
) -> None:
    sensor = defs.get_sensor_def("touched_partitions_sensor")
    assert targets(sensor) == ["refresh_derived"]
    assert sensor.minimum_interval_seconds == 5
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_job_def("refresh_derived").run_tags["tidelake/refresh"] == "derived"


def test_ingest_bronze_runs_every_topic_in_the_run_process(defs: dg.Definitions) -> None:
    # A step subprocess per topic would cost a Python start-up each: what the tick model avoids.
    assert defs.resolve_job_def("ingest_bronze").executor_def is dg.in_process_executor


def test_an_unknown_ingest_model_is_a_config_error(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match="TIDELAKE_INGEST_MODEL"):
        model_defs("cron")


def test_sensors_and_the_audit_schedule_start_stopped_in_the_test_environment(
    clean_env: Path,
) -> None:
    defs = build_definitions({"TIDELAKE_ENV": "test"})
    statuses = {s.name: s.default_status for s in defs.sensors or []}
    assert statuses["kafka_shop_clicks_sensor"] == dg.DefaultSensorStatus.STOPPED
    assert statuses["touched_partitions_sensor"] == dg.DefaultSensorStatus.STOPPED
    audit = defs.resolve_schedule_def(AUDIT_SCHEDULE_NAME)
    assert audit.default_status == dg.DefaultScheduleStatus.STOPPED


def test_resources_build_from_defaults(clean_env: Path) -> None:
    assert KafkaResource().settings().bootstrap_servers is None
    assert LakeResource().settings().uri == DEFAULT_LAKE_URI
    assert IngestResource().settings() == IngestSettings()


def test_set_variables_become_env_var_references(clean_env: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b:9092",
        "KAFKA_SASL_PASSWORD": "secret",
        "TIDELAKE_TOPIC_PARTITIONS": "6",
        "LAKE_URI": "s3://bucket/lake",
        "AWS_ALLOW_HTTP": "true",
        "TIDELAKE_QUIET_SECONDS": "0.5",
    }
    resources = build_definitions(env).resources
    kafka = resources["kafka"]
    assert kafka.bootstrap_servers == dg.EnvVar("KAFKA_BOOTSTRAP_SERVERS")
    assert kafka.sasl_password == dg.EnvVar("KAFKA_SASL_PASSWORD")
    assert kafka.sasl_username is None  # unset: default, not a reference that would fail runs
    assert resources["lake"].uri == dg.EnvVar("LAKE_URI")
    assert resources["lake"].aws_allow_http is True
    assert resources["ingest"].quiet_seconds == 0.5


def test_an_unknown_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="TIDELAKE_ENV"):
        current_environment({"TIDELAKE_ENV": "staging"})
