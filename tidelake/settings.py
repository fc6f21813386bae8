"""One settings module: every endpoint, secret and knob comes from an environment variable.

Nothing is read at import time; call :meth:`Settings.from_env` when you need the values. The Dagster
layer reads the same variable names through ``dagster.EnvVar`` so definitions load with nothing set.
The table in the README lists every variable with its default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, timedelta
from typing import Any

DEFAULT_LAKE_URI = "./.tidelake/lake"
DEFAULT_CONSUMER_GROUP = "tidelake-ingest"
FAULT_POINT_ENV = "TIDELAKE_FAULT_POINT"
MIN_BATCH_BYTES = 4 * 1024 * 1024
"""Below this a batch could not hold even a few maximum-size messages and their decoded rows."""


class ConfigError(ValueError):
    """A setting has a value Tidelake cannot use; the message names the variable and the fix."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``name`` as a boolean (1/true/yes/on or 0/false/no/off); ``default`` when unset."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


_SECURITY_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
_SASL_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"}


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach the Kafka cluster. ``bootstrap_servers=None`` means: start the embedded broker.

    For Confluent Cloud: ``SASL_SSL`` + ``PLAIN`` with an API key/secret. For Amazon MSK with
    SASL/SCRAM: ``SASL_SSL`` + ``SCRAM-SHA-512``. Any other librdkafka property can be passed as
    ``KAFKA_EXTRA_CONFIG="key=value,key=value"``.
    """

    bootstrap_servers: str | None = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    extra: tuple[tuple[str, str], ...] = ()
    topic_prefix: str = ""
    consumer_group: str = DEFAULT_CONSUMER_GROUP
    partitions: int = 3

    def client_config(self) -> dict[str, Any]:
        """librdkafka configuration shared by producers, consumers and the admin client."""
        if not self.bootstrap_servers:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set and no embedded broker runs")
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        conf.update(dict(self.extra))
        return conf

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        env = os.environ if env is None else env
        protocol = env.get("KAFKA_SECURITY_PROTOCOL", "").strip().upper() or "PLAINTEXT"
        if protocol not in _SECURITY_PROTOCOLS:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL={protocol!r}; use one of {sorted(_SECURITY_PROTOCOLS)}"
            )
        mechanism = env.get("KAFKA_SASL_MECHANISM", "").strip().upper() or None
        if mechanism and mechanism not in _SASL_MECHANISMS:
            raise ConfigError(
                f"KAFKA_SASL_MECHANISM={mechanism!r}; use one of {sorted(_SASL_MECHANISMS)}"
            )
        if protocol.startswith("SASL") and not mechanism:
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM")
        extra: list[tuple[str, str]] = []
        for item in filter(None, (s.strip() for s in env.get("KAFKA_EXTRA_CONFIG", "").split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"KAFKA_EXTRA_CONFIG item {item!r} is not key=value")
            extra.append((key.strip(), value.strip()))
        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or None,
            security_protocol=protocol,
            sasl_mechanism=mechanism,
            sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=env.get("KAFKA_SASL_PASSWORD") or None,
            ssl_ca_location=env.get("KAFKA_SSL_CA_LOCATION") or None,
            extra=tuple(extra),
            topic_prefix=env.get("TIDELAKE_TOPIC_PREFIX", ""),
            consumer_group=env.get("TIDELAKE_CONSUMER_GROUP", "").strip() or DEFAULT_CONSUMER_GROUP,
            partitions=_int(env, "TIDELAKE_TOPIC_PARTITIONS", 3),
        )


@dataclass(frozen=True)
class LakeSettings:
    """Where the lake lives: a local path or ``s3://bucket/prefix``.

    For S3 the standard ``AWS_*`` variables apply; ``AWS_ENDPOINT_URL`` points at an S3-compatible
    server (MinIO, moto) and ``AWS_ALLOW_HTTP=true`` allows plain HTTP to it. Concurrent writers on
    S3 rely on conditional puts (``conditional_put=etag``), never on unsafe renames.
    """

    uri: str = DEFAULT_LAKE_URI
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    aws_allow_http: bool = False

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith(("s3://", "s3a://"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LakeSettings:
        env = os.environ if env is None else env
        uri = env.get("LAKE_URI", "").strip() or DEFAULT_LAKE_URI
        if "://" in uri and not uri.startswith(("s3://", "s3a://", "file://")):
            raise ConfigError(f"LAKE_URI={uri!r}: use a local path or s3://bucket/prefix")
        return cls(
            uri=uri,
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
            aws_allow_http=env.get("AWS_ALLOW_HTTP", "").strip().lower() in {"1", "true", "yes"},
        )


@dataclass(frozen=True)
class IngestSettings:
    """Micro-batch caps of the ingest engine.

    Args:
        max_batch_records: stop a batch after this many records (across partitions).
        max_batch_seconds: stop a batch after this long, even if data keeps coming.
        quiet_seconds: a partition counts as caught up after this long without a new record
            (the watermark alone is not trusted; some brokers under-report it).
        max_message_bytes: larger messages are quarantined as ``oversized``.
        commit_rows: target rows per Delta commit (bigger commits, fewer small files).
        max_future_seconds: an ``event_time`` further than this ahead of ingestion is absurd.
        max_batch_bytes: memory budget of one batch in bytes of message values: the engine
            holds at most about half of it as raw records (commits close at an eighth,
            librdkafka's prefetch is capped at a sixteenth), their decoded copies the rest
            (the derivation is in :mod:`tidelake.ingest.consumer`).
        write_attempts: attempts of one Delta commit on a transient storage error (the object
            store client already retries 5xx and resets itself) before the batch stops.
        fault_point: test-only kill hook (``TIDELAKE_FAULT_POINT``); honoured only with
            ``TIDELAKE_ENV=test``, refused otherwise.
    """

    max_batch_records: int = 2_000_000
    max_batch_seconds: float = 60.0
    quiet_seconds: float = 0.5
    max_message_bytes: int = 256 * 1024
    commit_rows: int = 250_000
    max_future_seconds: float = 86_400.0
    max_batch_bytes: int = 512 * 1024 * 1024
    write_attempts: int = 4
    fault_point: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        env = os.environ if env is None else env
        d = cls()
        fault_point = env.get(FAULT_POINT_ENV, "").strip() or None
        environment = env.get("TIDELAKE_ENV", "").strip().lower() or "local"
        if fault_point and environment != "test":
            raise ConfigError(
                f"{FAULT_POINT_ENV} is a test hook that kills the process; it is honoured only "
                f"with TIDELAKE_ENV=test (here TIDELAKE_ENV={environment}). Unset it."
            )
        max_batch_bytes = _int(env, "TIDELAKE_MAX_BATCH_BYTES", d.max_batch_bytes, MIN_BATCH_BYTES)
        max_message_bytes = _int(env, "TIDELAKE_MAX_MESSAGE_BYTES", d.max_message_bytes)
        return cls(
            max_batch_records=_int(env, "TIDELAKE_MAX_BATCH_RECORDS", d.max_batch_records),
            max_batch_seconds=_float(env, "TIDELAKE_MAX_BATCH_SECONDS", d.max_batch_seconds, 0.1),
            quiet_seconds=_float(env, "TIDELAKE_QUIET_SECONDS", d.quiet_seconds, 0.05),
            max_message_bytes=max_message_bytes,
            commit_rows=_int(env, "TIDELAKE_COMMIT_ROWS", d.commit_rows),
            max_future_seconds=_float(env, "TIDELAKE_MAX_FUTURE_SECONDS", d.max_future_seconds),
            max_batch_bytes=max_batch_bytes,
            write_attempts=_int(env, "TIDELAKE_WRITE_ATTEMPTS", d.write_attempts),
            fault_point=fault_point,
        )


@dataclass(frozen=True)
class RefreshSettings:
    """Settings of the derived layers (silver, gold, the warehouse) and their refresh.

    Args:
        partitions_start: first UTC day of the hourly/daily Dagster partitions
            (``TIDELAKE_PARTITIONS_START``, ``YYYY-MM-DD``). Older valid events stay in bronze and
            silver and are counted by a check, never silently left out.
        late_after_seconds: an event is *late* when ``_ingested_at - event_time`` exceeds this
            (``TIDELAKE_LATE_AFTER_SECONDS``).
        lateness_horizon_hours: hours after which an hour partition counts as closed (no more
            late data expected): table maintenance compacts only closed hours
            (``TIDELAKE_LATENESS_HORIZON_HOURS``). Later events still land and still refresh.
        warehouse_path: the DuckDB file dbt builds its marts into (``TIDELAKE_WAREHOUSE_PATH``).
        silver_sla_seconds / gold_sla_seconds: freshness SLAs of the hour partitions
            (``TIDELAKE_SILVER_SLA_SECONDS``, ``TIDELAKE_GOLD_SLA_SECONDS``).
        worker_refresh: the ingestion worker refreshes silver and gold after its batches
            (``TIDELAKE_WORKER_REFRESH``, default true); the touched-partitions sensor then
            waits a grace period before it requests runs. Off: only the sensor's runs refresh.
    """

    partitions_start: str = "2025-01-01"
    late_after_seconds: float = 30.0
    lateness_horizon_hours: int = 6
    warehouse_path: str = ".tidelake/warehouse.duckdb"
    silver_sla_seconds: float = 300.0
    gold_sla_seconds: float = 600.0
    worker_refresh: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RefreshSettings:
        env = os.environ if env is None else env
        d = cls()
        start = env.get("TIDELAKE_PARTITIONS_START", "").strip() or d.partitions_start
        try:
            date.fromisoformat(start)
        except ValueError:
            raise ConfigError(
                f"TIDELAKE_PARTITIONS_START={start!r} is not a date; use YYYY-MM-DD"
            ) from None
        return cls(
            partitions_start=start,
            late_after_seconds=_float(env, "TIDELAKE_LATE_AFTER_SECONDS", d.late_after_seconds),
            lateness_horizon_hours=_int(
                env, "TIDELAKE_LATENESS_HORIZON_HOURS", d.lateness_horizon_hours
            ),
            warehouse_path=env.get("TIDELAKE_WAREHOUSE_PATH", "").strip() or d.warehouse_path,
            silver_sla_seconds=_float(
                env, "TIDELAKE_SILVER_SLA_SECONDS", d.silver_sla_seconds, 1.0
            ),
            gold_sla_seconds=_float(env, "TIDELAKE_GOLD_SLA_SECONDS", d.gold_sla_seconds, 1.0),
            worker_refresh=_bool(env, "TIDELAKE_WORKER_REFRESH", d.worker_refresh),
        )


FRAUD_ENV_PREFIX = "TIDELAKE_FRAUD_"


@dataclass(frozen=True)
class FraudThresholds:
    """The configurable thresholds of the fraud rules (defaults = the design's contract)."""

    velocity_count: int = 5
    velocity_window: timedelta = timedelta(minutes=10)
    ip_users: int = 5
    ip_window: timedelta = timedelta(minutes=60)
    payment_methods: int = 3
    payment_window: timedelta = timedelta(minutes=60)
    high_value_factor: float = 10.0
    high_value_lookback: timedelta = timedelta(hours=24)
    high_value_min_orders: int = 20
    browse_window: timedelta = timedelta(minutes=30)
    rapid_checkout: timedelta = timedelta(seconds=3)

    @staticmethod
    def env_names() -> dict[str, str]:
        """Field name → environment variable (durations are given in seconds)."""
        return {
            f.name: FRAUD_ENV_PREFIX
            + f.name.upper()
            + ("_SECONDS" if isinstance(f.default, timedelta) else "")
            for f in fields(FraudThresholds)
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FraudThresholds:
        """Thresholds from ``TIDELAKE_FRAUD_<NAME>`` variables; unset or empty means the default.

        Counts are integers >= 1, ``high_value_factor`` a number > 0, durations (``*_SECONDS``)
        a number of seconds > 0 (fractions allowed, at least one microsecond).

        Raises:
            ConfigError: a value does not parse or is out of range; the message names it.
        """
        names = cls.env_names()
        values: dict[str, object] = {}
        for f in fields(cls):
            name = names[f.name]
            raw = env.get(name, "").strip()
            if not raw:
                continue
            if isinstance(f.default, timedelta):
                values[f.name] = _fraud_seconds(name, raw)
            elif isinstance(f.default, int):
                values[f.name] = _fraud_count(name, raw)
            else:
                values[f.name] = _fraud_positive(name, raw)
        return cls(**values)  # type: ignore[arg-type]


def _fraud_count(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise ConfigError(f"{name}={value} must be >= 1")
    return value


def _fraud_positive(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={raw!r} must be a finite number > 0")
    return value


def _fraud_seconds(name: str, raw: str) -> timedelta:
    value = _fraud_positive(name, raw)
    if value < 1e-6:
        raise ConfigError(f"{name}={raw!r} is below one microsecond; give seconds, e.g. 600")
    return timedelta(seconds=value)


INGEST_MODELS = ("worker", "runs", "tick")
"""How micro-batches are launched (``TIDELAKE_INGEST_MODEL``): ``worker``, a long-lived
``tidelake ingest --follow`` process reporting each batch to Dagster; ``runs``, one Dagster run per
topic and batch; ``tick``, one Dagster run per sensor tick for every topic with pending records."""
DEFAULT_INGEST_MODEL = "worker"


def ingest_model_from_env(env: Mapping[str, str] | None = None) -> str:
    """``TIDELAKE_INGEST_MODEL`` (default ``worker``), validated."""
    env = os.environ if env is None else env
    model = env.get("TIDELAKE_INGEST_MODEL", "").strip().lower() or DEFAULT_INGEST_MODEL
    if model not in INGEST_MODELS:
        raise ConfigError(f"TIDELAKE_INGEST_MODEL={model!r}; use one of {', '.join(INGEST_MODELS)}")
    return model


@dataclass(frozen=True)
class Settings:
    """Everything Tidelake reads from the environment."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    lake: LakeSettings = field(default_factory=LakeSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    refresh: RefreshSettings = field(default_factory=RefreshSettings)
    environment: str = "local"
    ingest_model: str = DEFAULT_INGEST_MODEL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        environment = env.get("TIDELAKE_ENV", "").strip().lower() or "local"
        if environment not in {"local", "test", "prod"}:
            raise ConfigError(f"TIDELAKE_ENV={environment!r}; use local, test or prod")
        return cls(
            kafka=KafkaSettings.from_env(env),
            lake=LakeSettings.from_env(env),
            ingest=IngestSettings.from_env(env),
            refresh=RefreshSettings.from_env(env),
            environment=environment,
            ingest_model=ingest_model_from_env(env),
        )

    def with_bootstrap(self, bootstrap_servers: str) -> Settings:
        """A copy pointing at ``bootstrap_servers`` (e.g. the embedded broker just started)."""
        return replace(self, kafka=replace(self.kafka, bootstrap_servers=bootstrap_servers))
