"""Bronze assets: one per topic of the contract, each draining its Kafka topic exactly once.

Lineage: ``kafka/<table>`` (the topic, an external asset) → ``bronze/<table>``; every topic also
feeds ``quarantine``, which all bronze assets append to. ``quarantine`` is an external asset (no
function of its own materializes it); each bronze run that appends to it records a
materialization for it, with the topic and the reasons.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.bronze.checks import (
    UNIQUE_COORDINATES,
    bronze_check_specs,
    check_result,
    run_bronze_checks,
)
from resources.ingest import IngestResource, build_engine
from resources.kafka import KafkaClient
from resources.lake import LakeResource
from tidelake.contracts import QUARANTINE_SCHEMA, TOPICS, TopicContract
from tidelake.ingest import BatchReport, IngestError
from tidelake.quality.outcome import CheckOutcome

QUARANTINE_KEY = dg.AssetKey(["quarantine"])

META_COLUMN_DOCS: dict[str, str] = {
    "_topic": "physical Kafka topic",
    "_partition": "Kafka partition",
    "_offset": "Kafka offset",
    "_kafka_timestamp": "Kafka message timestamp",
    "_key": "Kafka message key: UTF-8 text, or base64 (see _key_base64)",
    "_key_base64": (
        "True when _key is the base64 of a key that is not UTF-8; NULL in rows written before "
        "the column existed"
    ),
    "_ingested_at": "when the ingestion batch decoded the record",
    "event_date": "UTC date of event_time (Delta partition)",
    "event_hour": "UTC hour of event_time, 0-23 (Delta partition)",
    "key": "Kafka message key, raw bytes",
    "raw": "the original message bytes",
    "error": "reason code (tidelake.contracts.QuarantineReason)",
    "error_detail": "readable explanation of the failure",
    "ingest_date": "UTC date of ingestion (Delta partition)",
}


def kafka_key(contract: TopicContract) -> dg.AssetKey:
    return dg.AssetKey(["kafka", contract.table_name])


def bronze_key(contract: TopicContract) -> dg.AssetKey:
    return dg.AssetKey(["bronze", contract.table_name])


def table_schema(schema: pa.Schema, docs: dict[str, str]) -> dg.TableSchema:
    """A Dagster column schema from an Arrow schema, column docs and nullability."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=str(f.type),
                description=docs.get(f.name) or None,
                constraints=dg.TableColumnConstraints(nullable=f.nullable),
            )
            for f in schema
        ]
    )


def bronze_table_schema(contract: TopicContract) -> dg.TableSchema:
    docs = {f.name: f.doc for f in contract.all_fields} | META_COLUMN_DOCS
    return table_schema(contract.bronze_schema(), docs)


def kafka_topic_spec(contract: TopicContract) -> dg.AssetSpec:
    """The Kafka topic as an external asset: produced outside Dagster, observed by its sensor."""
    return dg.AssetSpec(
        kafka_key(contract),
        group_name="kafka",
        description=(
            f"Kafka topic `{contract.name}` (plus any TIDELAKE_TOPIC_PREFIX), keyed by "
            f"`{contract.key_field}`, event types {', '.join(sorted(contract.event_types))}."
        ),
        kinds={"kafka"},
        metadata={
            "topic": contract.name,
            "key_field": contract.key_field,
            "retention_days": contract.retention_days,
        },
    )


def quarantine_spec(contracts: list[TopicContract]) -> dg.AssetSpec:
    """The shared ``quarantine`` Delta table, fed by every topic through its bronze asset."""
    return dg.AssetSpec(
        QUARANTINE_KEY,
        group_name="bronze",
        description=(
            "Every record of any topic that failed parsing or validation, with its raw bytes "
            "and the reason; appended by the bronze assets."
        ),
        deps=[kafka_key(c) for c in contracts],
        kinds={"delta"},
        metadata={"dagster/column_schema": table_schema(QUARANTINE_SCHEMA, META_COLUMN_DOCS)},
    )


def report_metadata(report: BatchReport) -> dict[str, Any]:
    """Materialization metadata of one ingestion batch (every figure is about this batch)."""
    return {
        "rows": report.valid,
        "invalid": report.invalid,
        "invalid_by_reason": dict(report.invalid_by_reason),
        "late_count": report.late_count,
        "max_lateness_seconds": report.max_lateness_seconds,
        "duplicate_event_ids": report.duplicate_event_ids,
        "partitions_touched": list(report.partitions_touched),
        "bronze_version": report.bronze_version,
        "quarantine_version": report.quarantine_version,
        "offsets": {str(p): [a, b] for p, (a, b) in sorted(report.offsets.items())},
        "positions_before": {str(p): v for p, v in sorted(report.positions.items())},
        "records": report.records,
        "bytes": report.bytes,
        "skipped_already_committed": report.skipped_already_committed,
        "offsets_without_records": report.skipped_offsets,
        "accepted_gaps": list(report.accepted_gaps),
        "commit_conflicts": report.commit_conflicts,
        "write_retries": report.write_retries,
        "peak_held_bytes": report.peak_held_bytes,
        "topic_id": report.topic_id,
        "stage_seconds": {k: round(v, 4) for k, v in report.stage_seconds.items()},
        "physical_topic": report.physical_topic,
        "summary": report.summary(),
    }


def quarantine_materialization(
    contract: TopicContract, report: BatchReport
) -> dg.AssetMaterialization | None:
    """The ``quarantine`` materialization of a batch that quarantined records (else None)."""
    if not report.invalid:
        return None
    return dg.AssetMaterialization(
        QUARANTINE_KEY,
        description=f"{report.invalid} records of {contract.name} quarantined",
        metadata={
            "topic": contract.name,
            "rows": report.invalid,
            "invalid_by_reason": dict(report.invalid_by_reason),
            "quarantine_version": report.quarantine_version,
        },
    )


def batch_metadata(report: BatchReport, outcomes: dict[str, CheckOutcome]) -> dict[str, Any]:
    """The bronze materialization's metadata: the batch's figures plus the table's row count."""
    metadata = report_metadata(report)
    rows = outcomes.get(UNIQUE_COORDINATES, CheckOutcome(True, "")).metadata.get("rows")
    if rows is not None:
        metadata["dagster/row_count"] = rows
    return metadata


def batch_events(
    contract: TopicContract, report: BatchReport, outcomes: dict[str, CheckOutcome]
) -> list[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """What one batch ingested outside a run records in Dagster, in order: quarantine's and
    bronze's materializations, then the bronze checks' evaluations (the same figures, names and
    severities a run of the asset records)."""
    events: list[dg.AssetMaterialization | dg.AssetCheckEvaluation] = []
    quarantined = quarantine_materialization(contract, report)
    if quarantined is not None:
        events.append(quarantined)
    events.append(
        dg.AssetMaterialization(
            bronze_key(contract),
            description=report.summary(),
            metadata=batch_metadata(report, outcomes),
        )
    )
    for name, outcome in outcomes.items():
        result = check_result(name, outcome)
        events.append(
            dg.AssetCheckEvaluation(
                asset_key=bronze_key(contract),
                check_name=name,
                passed=outcome.passed,
                metadata=outcome.metadata,
                severity=result.severity,
                description=outcome.description,
                blocking=True,
            )
        )
    return events


def build_bronze_asset(contract: TopicContract) -> dg.AssetsDefinition:
    """The bronze asset of one topic: one micro-batch per materialization, then its checks."""
    key = bronze_key(contract)

    @dg.asset(
        key=key,
        group_name="bronze",
        description=contract.description,
        deps=[kafka_key(contract)],
        kinds={"delta", "kafka"},
        metadata={
            "dagster/column_schema": bronze_table_schema(contract),
            "dagster/table_name": contract.bronze_path,
            "topic": contract.name,
            "partitioned_by": "event_date, event_hour (UTC, of event_time)",
        },
        check_specs=bronze_check_specs(key, contract),
    )
    def _bronze(
        context: dg.AssetExecutionContext,
        kafka: dg.ResourceParam[KafkaClient],
        lake: LakeResource,
        ingest: IngestResource,
    ) -> dg.MaterializeResult:
        """Valid records of one Kafka topic, typed, with their Kafka coordinates."""
        engine = build_engine(kafka, lake, ingest)
        try:
            report = engine.ingest_topic(contract)
        except Exception as exc:
            partial: BatchReport | None = getattr(exc, "report", None)
            if partial is not None and partial.commits:
                # What committed before the error is durable: record it, then fail the run.
                context.log_event(
                    dg.AssetMaterialization(
                        bronze_key(contract),
                        description=f"partial batch: {exc}",
                        metadata=report_metadata(partial),
                    )
                )
            if isinstance(exc, IngestError):
                raise dg.Failure(description=str(exc)) from exc
            raise
        context.log.info(report.summary())
        quarantined = quarantine_materialization(contract, report)
        if quarantined is not None:
            context.log_event(quarantined)
        outcomes = run_bronze_checks(engine.lake, contract, engine.kafka, report)
        return dg.MaterializeResult(
            metadata=batch_metadata(report, outcomes),
            check_results=[check_result(name, o) for name, o in outcomes.items()],
        )

    return _bronze


def build_bronze_layer(
    contracts: list[TopicContract] | None = None,
) -> tuple[list[dg.AssetSpec], list[dg.AssetsDefinition]]:
    """Kafka topic specs + quarantine spec, and one bronze asset per topic of the registry."""
    cs = list(contracts or TOPICS.values())
    specs = [kafka_topic_spec(c) for c in cs] + [quarantine_spec(cs)]
    return specs, [build_bronze_asset(c) for c in cs]
