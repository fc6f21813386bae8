"""Asset checks of every bronze table: names, specs, results from :mod:`tidelake.quality.bronze`.

All three are blocking with ERROR severity: bronze is the layer boundary everything downstream
reads, and each failure means the log is wrong (a record written twice, lost, or off-contract),
so downstream assets must not build on it.
"""

from __future__ import annotations

import dagster as dg

from tidelake.contracts import TopicContract
from tidelake.ingest import BatchReport
from tidelake.lake import Lake
from tidelake.quality import bronze as checks
from tidelake.settings import KafkaSettings

UNIQUE_COORDINATES = "unique_kafka_coordinates"
CONTIGUOUS_OFFSETS = "contiguous_offsets"
CONTRACT_SCHEMA = "contract_schema"
BRONZE_CHECK_NAMES: tuple[str, ...] = (UNIQUE_COORDINATES, CONTIGUOUS_OFFSETS, CONTRACT_SCHEMA)


def bronze_check_specs(key: dg.AssetKey, contract: TopicContract) -> list[dg.AssetCheckSpec]:
    """The check specs of one bronze asset."""
    return [
        dg.AssetCheckSpec(
            UNIQUE_COORDINATES,
            asset=key,
            blocking=True,
            description="(_topic, _partition, _offset) is unique: no record was written twice.",
        ),
        dg.AssetCheckSpec(
            CONTIGUOUS_OFFSETS,
            asset=key,
            blocking=True,
            description=(
                "Per partition, bronze and quarantine together hold every offset up to the "
                "committed position exactly once: no record was lost."
            ),
        ),
        dg.AssetCheckSpec(
            CONTRACT_SCHEMA,
            asset=key,
            blocking=True,
            description=(
                f"Columns and types match the {contract.name} contract (whole table) and the "
                "rows written by this run pass its rules (pandera)."
            ),
        ),
    ]


def check_result(name: str, outcome: checks.CheckOutcome) -> dg.AssetCheckResult:
    """The Dagster result of one check outcome."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=outcome.passed,
        description=outcome.description,
        metadata=outcome.metadata,
        severity=dg.AssetCheckSeverity.ERROR,
    )


def run_bronze_checks(
    lake: Lake, contract: TopicContract, kafka: KafkaSettings, report: BatchReport
) -> dict[str, checks.CheckOutcome]:
    """Evaluate the three checks after the ingestion batch described by ``report``."""
    return {
        UNIQUE_COORDINATES: checks.check_unique_coordinates(lake, contract),
        CONTIGUOUS_OFFSETS: checks.check_offsets_contiguous(lake, contract, kafka),
        CONTRACT_SCHEMA: checks.check_bronze_schema(lake, contract, report.offsets),
    }
