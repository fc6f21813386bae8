"""kafka_admin without a broker: argument checks and a clear error when nobody answers."""

from __future__ import annotations

import time

import pytest

from tidelake.broker import free_port
from tidelake.kafka_admin import KafkaAdminError, ensure_topics, wait_for_broker
from tidelake.settings import ConfigError, KafkaSettings


def test_wait_for_broker_gives_up_with_the_address_in_the_message() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()

    with pytest.raises(KafkaAdminError, match=bootstrap):
        wait_for_broker(bootstrap, timeout=1.0)

    assert time.monotonic() - started < 10


def test_ensure_topics_rejects_zero_partitions() -> None:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")

    with pytest.raises(ValueError, match="partitions"):
        ensure_topics(kafka, partitions=0)


def test_ensure_topics_needs_bootstrap_servers() -> None:
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        ensure_topics(KafkaSettings())
