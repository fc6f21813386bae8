"""Guards for the whole code location: it loads with nothing set and has the expected shape."""

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


def test_one_sensor_per_topic_running_locally(defs: dg.Definitions) -> None:
    sensors = {s.name: s for s in defs.sensors or []}
    for contract in TOPICS.values():
        sensor = sensors[f"kafka_{contract.table_name}_sensor"]
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.minimum_interval_seconds is not None
        assert sensor.minimum_interval_seconds <= 10
    assert "run_failure_alert_sensor" in sensors
    assert "run_recovery_alert_sensor" in sensors


def test_sensors_and_the_audit_schedule_start_stopped_in_the_test_environment(
    clean_env: Path,
) -> None:
    defs = build_definitions({"TIDELAKE_ENV": "test"})
    statuses = {s.name: s.default_status for s in defs.sensors or []}
    assert statuses["kafka_shop_clicks_sensor"] == dg.DefaultSensorStatus.STOPPED
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
