"""Bronze layer: Kafka topics → ``bronze/<table>`` + ``quarantine`` Delta tables."""

from assets.bronze.checks import (
    BRONZE_CHECK_NAMES,
    CONTIGUOUS_OFFSETS,
    CONTRACT_SCHEMA,
    UNIQUE_COORDINATES,
)
from assets.bronze.ingest import (
    QUARANTINE_KEY,
    bronze_key,
    build_bronze_asset,
    build_bronze_layer,
    kafka_key,
)

__all__ = [
    "BRONZE_CHECK_NAMES",
    "CONTIGUOUS_OFFSETS",
    "CONTRACT_SCHEMA",
    "QUARANTINE_KEY",
    "UNIQUE_COORDINATES",
    "bronze_key",
    "build_bronze_asset",
    "build_bronze_layer",
    "kafka_key",
]
