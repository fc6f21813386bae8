"""Settings.from_env: defaults with nothing set, errors that name the variable, client configs."""

from __future__ import annotations

import os

import pytest

from tidelake.settings import (
    DEFAULT_CONSUMER_GROUP,
    DEFAULT_LAKE_URI,
    ConfigError,
    IngestSettings,
    KafkaSettings,
    LakeSettings,
    Settings,
)


def test_empty_environment_gives_local_defaults() -> None:
    settings = Settings.from_env({})

    assert settings.environment == "local"
    assert settings.kafka == KafkaSettings()
    assert settings.kafka.bootstrap_servers is None
    assert settings.kafka.consumer_group == DEFAULT_CONSUMER_GROUP
    assert settings.kafka.partitions == 3
    assert settings.lake.uri == DEFAULT_LAKE_URI
    assert not settings.lake.is_s3
    assert settings.ingest == IngestSettings()


def test_blank_values_count_as_unset() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "  ",
        "LAKE_URI": "",
        "TIDELAKE_TOPIC_PARTITIONS": " ",
        "TIDELAKE_ENV": "",
    }

    settings = Settings.from_env(env)

    assert settings == Settings()


def test_from_env_reads_the_process_environment_when_no_mapping_is_given(
    clean_env: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("TIDELAKE_ENV", "TEST")

    settings = Settings.from_env()

    assert settings.kafka.bootstrap_servers == "broker:9092"
    assert settings.environment == "test"


def test_clean_env_strips_ambient_credentials_and_empties_home(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    for name in ("AWS_SECRET_ACCESS_KEY", "KAFKA_SASL_PASSWORD", "LAKE_URI", "DAGSTER_HOME"):
        monkeypatch.setenv(name, "ambient")

    home = request.getfixturevalue("clean_env")

    assert Settings.from_env() == Settings()
    assert os.environ["HOME"] == str(home)
    assert not any(home.iterdir())
    assert "DAGSTER_HOME" not in os.environ


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TIDELAKE_ENV": "staging"}, "TIDELAKE_ENV"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SASL_MECHANISM": "MD5"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_EXTRA_CONFIG": "acks"}, "KAFKA_EXTRA_CONFIG"),
        ({"KAFKA_EXTRA_CONFIG": "=1"}, "KAFKA_EXTRA_CONFIG"),
        ({"TIDELAKE_TOPIC_PARTITIONS": "three"}, "TIDELAKE_TOPIC_PARTITIONS"),
        ({"TIDELAKE_TOPIC_PARTITIONS": "0"}, "TIDELAKE_TOPIC_PARTITIONS"),
        ({"TIDELAKE_MAX_BATCH_RECORDS": "-5"}, "TIDELAKE_MAX_BATCH_RECORDS"),
        ({"TIDELAKE_MAX_BATCH_SECONDS": "soon"}, "TIDELAKE_MAX_BATCH_SECONDS"),
        ({"TIDELAKE_QUIET_SECONDS": "0.001"}, "TIDELAKE_QUIET_SECONDS"),
        ({"LAKE_URI": "gs://bucket/lake"}, "LAKE_URI"),
    ],
)
def test_bad_value_raises_config_error_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_confluent_cloud_style_sasl_settings_build_the_client_config() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "pkc-123.eu-west-1.aws.confluent.cloud:9092",
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_MECHANISM": "plain",
        "KAFKA_SASL_USERNAME": "API_KEY",
        "KAFKA_SASL_PASSWORD": "API_SECRET",
        "KAFKA_EXTRA_CONFIG": "client.id=tidelake, socket.keepalive.enable=true",
    }

    conf = KafkaSettings.from_env(env).client_config()

    assert conf == {
        "bootstrap.servers": "pkc-123.eu-west-1.aws.confluent.cloud:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "API_KEY",
        "sasl.password": "API_SECRET",
        "client.id": "tidelake",
        "socket.keepalive.enable": "true",
    }


def test_msk_scram_settings_include_the_ca_location() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b-1.msk:9096,b-2.msk:9096",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "tidelake",
        "KAFKA_SASL_PASSWORD": "s3cret",
        "KAFKA_SSL_CA_LOCATION": "/etc/ssl/certs/ca.pem",
    }

    conf = KafkaSettings.from_env(env).client_config()

    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["ssl.ca.location"] == "/etc/ssl/certs/ca.pem"
    assert conf["bootstrap.servers"] == "b-1.msk:9096,b-2.msk:9096"


def test_plaintext_config_has_no_sasl_keys() -> None:
    conf = KafkaSettings(bootstrap_servers="127.0.0.1:9092").client_config()

    assert conf == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "PLAINTEXT"}


def test_client_config_without_bootstrap_servers_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        KafkaSettings().client_config()


def test_secrets_stay_out_of_repr() -> None:
    kafka = KafkaSettings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_PASSWORD": "hunter2",
        }
    )
    lake = LakeSettings.from_env({"AWS_SECRET_ACCESS_KEY": "wJalr", "AWS_SESSION_TOKEN": "tok"})

    assert "hunter2" not in repr(kafka)
    assert "wJalr" not in repr(lake)
    assert "tok" not in repr(lake)


def test_s3_lake_settings_read_the_aws_variables() -> None:
    lake = LakeSettings.from_env(
        {
            "LAKE_URI": "s3://bucket/prefix",
            "AWS_DEFAULT_REGION": "eu-central-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_ALLOW_HTTP": "TRUE",
        }
    )

    assert lake.is_s3
    assert lake.aws_region == "eu-central-1"
    assert lake.aws_endpoint_url == "http://127.0.0.1:9000"
    assert lake.aws_allow_http


def test_aws_region_wins_over_aws_default_region() -> None:
    lake = LakeSettings.from_env({"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "eu-west-1"})

    assert lake.aws_region == "us-west-2"


def test_ingest_caps_are_read_and_typed() -> None:
    ingest = IngestSettings.from_env(
        {"TIDELAKE_MAX_BATCH_RECORDS": "1000", "TIDELAKE_MAX_BATCH_SECONDS": "2.5"}
    )

    assert ingest.max_batch_records == 1000
    assert ingest.max_batch_seconds == 2.5


def test_with_bootstrap_points_only_kafka_at_the_new_broker() -> None:
    settings = Settings.from_env({"TIDELAKE_TOPIC_PREFIX": "dev."})

    moved = settings.with_bootstrap("127.0.0.1:19092")

    assert moved.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert moved.kafka.topic_prefix == "dev."
    assert settings.kafka.bootstrap_servers is None


def test_refresh_settings_have_defaults_and_reject_a_bad_partition_start() -> None:
    from tidelake.settings import RefreshSettings

    d = RefreshSettings.from_env({})
    assert (d.partitions_start, d.late_after_seconds) == ("2025-01-01", 30.0)
    assert d.warehouse_path == ".tidelake/warehouse.duckdb"
    got = RefreshSettings.from_env(
        {"TIDELAKE_PARTITIONS_START": "2026-01-01", "TIDELAKE_LATE_AFTER_SECONDS": "5"}
    )
    assert (got.partitions_start, got.late_after_seconds) == ("2026-01-01", 5.0)
    with pytest.raises(ConfigError, match="TIDELAKE_PARTITIONS_START"):
        RefreshSettings.from_env({"TIDELAKE_PARTITIONS_START": "yesterday"})
