"""Kafka resources: one interface (:class:`KafkaClient`), a real and a fake implementation.

Assets and sensors declare ``kafka: ResourceParam[KafkaClient]`` and only call ``settings()``,
``consumer_factory()`` and ``admin_factory()``, so unit tests swap in :class:`FakeKafkaResource`
(an in-memory broker) without touching the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import dagster as dg
from pydantic import Field

from tidelake.fake_kafka import FakeKafka
from tidelake.ingest.consumer import (
    AdminFactory,
    ConsumerFactory,
    kafka_admin_factory,
    kafka_consumer_factory,
)
from tidelake.settings import DEFAULT_CONSUMER_GROUP, ConfigError, KafkaSettings


class KafkaClient(Protocol):
    """What the Dagster layer needs from Kafka: connection settings and a consumer factory."""

    def settings(self) -> KafkaSettings: ...

    def consumer_factory(self) -> ConsumerFactory: ...

    def admin_factory(self) -> AdminFactory | None: ...


class KafkaResource(dg.ConfigurableResource):
    """A Kafka cluster reached through ``confluent_kafka`` (embedded broker, MSK, Confluent Cloud).

    Field values are validated exactly as ``KafkaSettings.from_env`` validates the variables of
    the same name (listed per field), so the CLI and Dagster accept the same configuration.
    """

    bootstrap_servers: str | None = Field(
        default=None, description="KAFKA_BOOTSTRAP_SERVERS: host:port[,host:port]"
    )
    security_protocol: str = Field(
        default="PLAINTEXT", description="KAFKA_SECURITY_PROTOCOL: PLAINTEXT, SSL, SASL_SSL, ..."
    )
    sasl_mechanism: str | None = Field(
        default=None, description="KAFKA_SASL_MECHANISM: PLAIN, SCRAM-SHA-512, ..."
    )
    sasl_username: str | None = Field(default=None, description="KAFKA_SASL_USERNAME")
    sasl_password: str | None = Field(default=None, description="KAFKA_SASL_PASSWORD (secret)")
    ssl_ca_location: str | None = Field(default=None, description="KAFKA_SSL_CA_LOCATION")
    extra_config: str | None = Field(
        default=None, description="KAFKA_EXTRA_CONFIG: librdkafka key=value,key=value"
    )
    topic_prefix: str = Field(
        default="", description="TIDELAKE_TOPIC_PREFIX: prepended to every contract topic name"
    )
    consumer_group: str = Field(
        default=DEFAULT_CONSUMER_GROUP, description="TIDELAKE_CONSUMER_GROUP"
    )
    partitions: int = Field(default=3, description="TIDELAKE_TOPIC_PARTITIONS")

    def settings(self) -> KafkaSettings:
        """The engine's :class:`KafkaSettings` (raises ``ConfigError`` on an unusable value)."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers or "",
            "KAFKA_SECURITY_PROTOCOL": self.security_protocol,
            "KAFKA_SASL_MECHANISM": self.sasl_mechanism or "",
            "KAFKA_SASL_USERNAME": self.sasl_username or "",
            "KAFKA_SASL_PASSWORD": self.sasl_password or "",
            "KAFKA_SSL_CA_LOCATION": self.ssl_ca_location or "",
            "KAFKA_EXTRA_CONFIG": self.extra_config or "",
            "TIDELAKE_TOPIC_PREFIX": self.topic_prefix,
            "TIDELAKE_CONSUMER_GROUP": self.consumer_group,
            "TIDELAKE_TOPIC_PARTITIONS": str(self.partitions),
        }
        return KafkaSettings.from_env(env)

    def consumer_factory(self) -> ConsumerFactory:
        """Builds real ``confluent_kafka.Consumer`` objects.

        Raises:
            ConfigError: no bootstrap servers are configured (a consumer without them would
                only time out).
        """
        if not (self.bootstrap_servers or "").strip():
            raise ConfigError(
                "KAFKA_BOOTSTRAP_SERVERS is not set: point it at a broker, or run `tidelake dev`"
            )
        return kafka_consumer_factory

    def admin_factory(self) -> AdminFactory | None:
        """Builds real admin clients (topic ids, to notice a re-created topic)."""
        return kafka_admin_factory


@dataclass
class FakeKafkaResource:
    """An in-memory :class:`FakeKafka` behind the :class:`KafkaClient` interface, for unit tests.

    A plain object rather than a ConfigurableResource: Dagster rebuilds configurable resources from
    their config, which would lose the shared in-memory topics.
    """

    kafka: FakeKafka = field(default_factory=FakeKafka)
    topic_prefix: str = ""
    consumer_group: str = DEFAULT_CONSUMER_GROUP

    def settings(self) -> KafkaSettings:
        return KafkaSettings(topic_prefix=self.topic_prefix, consumer_group=self.consumer_group)

    def consumer_factory(self) -> ConsumerFactory:
        return self.kafka.consumer_factory

    def admin_factory(self) -> AdminFactory | None:
        return self.kafka.admin_factory
