"""The environment (local / test / prod) and the resources each one uses.

Read when definitions are built (never at import time of the modules that define things).
Secrets, endpoints and names reach resources as ``dagster.EnvVar`` references, resolved at run
time and never shown as values in the UI. Only variables that are set get a reference, because
Dagster fails a run whose resource names an unset variable; unset ones keep the resource default,
so definitions load (and runs start locally) with nothing set. ``EnvVar`` yields only strings and
ints, so the float caps and ``AWS_ALLOW_HTTP`` are parsed here, by the same settings module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, cast

import dagster as dg

from resources import AlertWebhookResource, IngestResource, KafkaResource, LakeResource
from tidelake.settings import ConfigError, IngestSettings, LakeSettings

Environment = Literal["local", "test", "prod"]
ENVIRONMENTS: tuple[Environment, ...] = ("local", "test", "prod")

KAFKA_VARS: dict[str, str] = {
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME",
    "sasl_password": "KAFKA_SASL_PASSWORD",
    "ssl_ca_location": "KAFKA_SSL_CA_LOCATION",
    "extra_config": "KAFKA_EXTRA_CONFIG",
    "topic_prefix": "TIDELAKE_TOPIC_PREFIX",
    "consumer_group": "TIDELAKE_CONSUMER_GROUP",
}
KAFKA_INT_VARS: dict[str, str] = {"partitions": "TIDELAKE_TOPIC_PARTITIONS"}
LAKE_VARS: dict[str, str] = {
    "uri": "LAKE_URI",
    "aws_endpoint_url": "AWS_ENDPOINT_URL",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
}
INGEST_INT_VARS: dict[str, str] = {
    "max_batch_records": "TIDELAKE_MAX_BATCH_RECORDS",
    "max_message_bytes": "TIDELAKE_MAX_MESSAGE_BYTES",
    "commit_rows": "TIDELAKE_COMMIT_ROWS",
    "max_batch_bytes": "TIDELAKE_MAX_BATCH_BYTES",
    "write_attempts": "TIDELAKE_WRITE_ATTEMPTS",
}
ALERT_VARS: dict[str, str] = {"url": "TIDELAKE_ALERT_WEBHOOK_URL"}


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def current_environment(env: Mapping[str, str] | None = None) -> Environment:
    """``TIDELAKE_ENV`` (default ``local``); anything else than local/test/prod is an error."""
    value = _env(env).get("TIDELAKE_ENV", "").strip().lower() or "local"
    if value not in ENVIRONMENTS:
        raise ConfigError(f"TIDELAKE_ENV={value!r}; use one of {', '.join(ENVIRONMENTS)}")
    return cast(Environment, value)


def env_refs(
    fields: Mapping[str, str], env: Mapping[str, str] | None = None, as_int: bool = False
) -> dict[str, Any]:
    """``field → EnvVar(variable)`` for the variables that are set (non-blank) in ``env``.

    Rule: an unset variable gets no reference, so the field keeps its default instead of failing
    the run with "environment variable not set".
    """
    e = _env(env)
    return {
        name: (dg.EnvVar.int(var) if as_int else dg.EnvVar(var))
        for name, var in fields.items()
        if e.get(var, "").strip()
    }


def sensor_status(environment: Environment) -> dg.DefaultSensorStatus:
    """Ingestion sensors run by default locally (``dagster dev`` just works) and in production
    (the always-on deployment); they start stopped under ``test`` so test instances stay quiet."""
    if environment == "test":
        return dg.DefaultSensorStatus.STOPPED
    return dg.DefaultSensorStatus.RUNNING


def schedule_status(environment: Environment) -> dg.DefaultScheduleStatus:
    """Schedules follow the sensors: running locally and in production, stopped under ``test``."""
    return dg.DefaultScheduleStatus(sensor_status(environment).value)


def build_resources(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resources of every environment: real Kafka and lake, configured from variables.

    Local, test and prod differ in their values (embedded broker vs MSK, a directory vs S3), not
    in their classes; unit tests pass ``FakeKafkaResource`` themselves.
    """
    e = _env(env)
    lake_defaults = LakeSettings.from_env(e)
    ingest_defaults = IngestSettings.from_env(e)
    region = "AWS_REGION" if e.get("AWS_REGION", "").strip() else "AWS_DEFAULT_REGION"
    return {
        "kafka": KafkaResource(**env_refs(KAFKA_VARS, e), **env_refs(KAFKA_INT_VARS, e, True)),
        "lake": LakeResource(
            **env_refs(LAKE_VARS | {"aws_region": region}, e),
            aws_allow_http=lake_defaults.aws_allow_http,
        ),
        "ingest": IngestResource(
            **env_refs(INGEST_INT_VARS, e, True),
            max_batch_seconds=ingest_defaults.max_batch_seconds,
            quiet_seconds=ingest_defaults.quiet_seconds,
            max_future_seconds=ingest_defaults.max_future_seconds,
        ),
        "alerts": AlertWebhookResource(**env_refs(ALERT_VARS, e)),
    }
