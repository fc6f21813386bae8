"""Kafka administration: wait for a broker, create the contract's topics, list partitions.

Rules:

* Topic metadata is always read with a *full* metadata request (``list_topics()`` without a topic).
  A metadata request naming a topic auto-creates it on brokers with auto-creation on (Tansu does,
  with its own default partition count), so asking "how many partitions has X?" could create X.
* Creating topics is idempotent: a topic that already exists is fine, whatever its partition
  count; a count that differs from the requested one is reported (logged), never changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from tidelake.contracts import TOPICS, TopicContract
from tidelake.settings import KafkaSettings

logger = logging.getLogger(__name__)

DEFAULT_ADMIN_TIMEOUT = 30.0
_MS_PER_DAY = 86_400_000


class KafkaAdminError(RuntimeError):
    """A broker could not be reached, or a topic operation failed."""


def admin_client(kafka: KafkaSettings) -> AdminClient:
    """An :class:`AdminClient` for ``kafka`` whose librdkafka logs go to Python logging."""
    conf: dict[str, Any] = kafka.client_config()
    conf.setdefault("logger", logging.getLogger(f"{__name__}.librdkafka"))
    return AdminClient(conf)


def _settings(bootstrap: str | KafkaSettings) -> KafkaSettings:
    if isinstance(bootstrap, KafkaSettings):
        return bootstrap
    return KafkaSettings(bootstrap_servers=bootstrap)


def wait_for_broker(
    bootstrap: str | KafkaSettings, timeout: float = DEFAULT_ADMIN_TIMEOUT
) -> ClusterMetadata:
    """Block until the cluster answers a metadata request, and return that metadata.

    Args:
        bootstrap: ``host:port[,host:port]`` of a PLAINTEXT cluster, or full settings (SASL/TLS).
        timeout: seconds before giving up.

    Raises:
        KafkaAdminError: no answer within ``timeout``; the message carries the last error.
    """
    settings = _settings(bootstrap)
    admin = admin_client(settings)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            return admin.list_topics(timeout=max(0.5, min(remaining, 5.0)))
        except KafkaException as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise KafkaAdminError(
                f"Kafka at {settings.bootstrap_servers} did not answer "
                f"within {timeout:.0f}s: {last}"
            )
        time.sleep(0.2)


def _topic_partition_counts(admin: AdminClient, timeout: float) -> dict[str, int]:
    metadata = admin.list_topics(timeout=timeout)
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if topic.error is None and topic.partitions
    }


def ensure_topics(
    kafka: KafkaSettings,
    contracts: Iterable[TopicContract] | None = None,
    partitions: int | None = None,
    timeout: float = DEFAULT_ADMIN_TIMEOUT,
) -> dict[str, int]:
    """Create the physical topics of ``contracts`` that do not exist yet.

    ``contracts`` defaults to every topic of the registry (``TOPICS``). Physical names carry
    ``kafka.topic_prefix``. New topics get ``partitions`` (default
    ``kafka.partitions``), the broker's default replication factor and ``retention.ms`` from the
    contract. Existing topics are left alone; if their partition count differs from the requested
    one, a warning says so (the returned counts are the real ones).

    Returns:
        Physical topic name → actual partition count, for every contract given.

    Raises:
        KafkaAdminError: a creation failed for a reason other than "already exists", or the topics
            did not show up in metadata within ``timeout``.
    """
    wanted = partitions if partitions is not None else kafka.partitions
    if wanted < 1:
        raise ValueError(f"partitions must be >= 1, got {wanted}")
    chosen = TOPICS.values() if contracts is None else contracts
    names = {c.physical_topic(kafka.topic_prefix): c for c in chosen}
    admin = admin_client(kafka)
    deadline = time.monotonic() + timeout
    existing = _topic_partition_counts(admin, timeout)
    new = [
        NewTopic(
            name,
            num_partitions=wanted,
            config={"retention.ms": str(contract.retention_days * _MS_PER_DAY)},
        )
        for name, contract in names.items()
        if name not in existing
    ]
    if new:
        futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
        failures: list[str] = []
        for name, future in futures.items():
            try:
                future.result()
                logger.info("created topic %s with %d partitions", name, wanted)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    failures.append(f"{name}: {error.str()}")
        if failures:
            raise KafkaAdminError("could not create topics: " + "; ".join(failures))

    # Created topics can take a moment to appear in metadata.
    while True:
        counts = _topic_partition_counts(admin, max(0.5, deadline - time.monotonic()))
        missing = sorted(set(names) - set(counts))
        if not missing:
            break
        if time.monotonic() >= deadline:
            raise KafkaAdminError(f"topics not visible in metadata after {timeout:.0f}s: {missing}")
        time.sleep(0.1)
    result = {name: counts[name] for name in names}
    for name, count in result.items():
        if count != wanted:
            logger.warning(
                "topic %s exists with %d partitions, not the %d requested; left unchanged",
                name,
                count,
                wanted,
            )
    return result


def topic_partitions(
    kafka: KafkaSettings, physical_topic: str, timeout: float = DEFAULT_ADMIN_TIMEOUT
) -> list[int]:
    """Sorted partition ids of ``physical_topic``; empty if the topic does not exist.

    Never creates the topic (full metadata request; see the module rules).
    """
    metadata = admin_client(kafka).list_topics(timeout=timeout)
    topic = metadata.topics.get(physical_topic)
    if topic is None or topic.error is not None:
        return []
    return sorted(topic.partitions)
