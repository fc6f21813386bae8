"""Silver assets: one per topic, ``bronze/<table>`` → ``silver/<table>``, hourly partitioned.

Each materialization refreshes the stale hours among the run's partitions (plus every stale hour
outside the partition space, see :func:`tidelake.layers.refresh_silver`) in one Delta commit, then
runs the silver checks over exactly the hours it wrote. A range run (single-run backfill) does
it once for the whole range; hours of the range that were not stale are recorded ``unchanged``
(see :mod:`assets.silver.metadata`).
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
import dagster as dg

from assets.bronze import bronze_key
from assets.bronze.ingest import META_COLUMN_DOCS, table_schema
from assets.silver.checks import check_result, run_silver_checks, silver_check_specs
from assets.silver.metadata import record_refresh, run_metadata
from resources.lake import LakeResource
from tidelake.contracts import TopicContract
from tidelake.layers import refresh_silver
from tidelake.settings import RefreshSettings

SILVER_COLUMN_DOCS: dict[str, str] = {
    "_deliveries": "how many bronze deliveries (producer retries included) this event_id had",
}


def silver_key(contract: TopicContract) -> dg.AssetKey:
    return dg.AssetKey(["silver", contract.table_name])


def silver_table_schema(contract: TopicContract) -> dg.TableSchema:
    docs = {f.name: f.doc for f in contract.all_fields} | META_COLUMN_DOCS | SILVER_COLUMN_DOCS
    return table_schema(contract.silver_schema(), docs)


def silver_description(contract: TopicContract) -> str:
    return (
        f"Each logical event of `{contract.name}` once (by event_id; the first bronze delivery "
        "wins: smallest _ingested_at, then _partition, _offset), with the bronze columns and "
        "_deliveries; one hour partition per UTC hour of event_time."
    )


def build_silver_asset(
    contract: TopicContract,
    partitions_def: dg.PartitionsDefinition,
    settings: RefreshSettings,
) -> dg.AssetsDefinition:
    """The silver asset of one topic."""
    key = silver_key(contract)

    @dg.asset(
        key=key,
        group_name="silver",
        description=silver_description(contract),
        deps=[bronze_key(contract)],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"delta", "polars"},
        metadata={
            "dagster/column_schema": silver_table_schema(contract),
            "dagster/table_name": contract.silver_path,
            "topic": contract.name,
            "partitioned_by": "event_date, event_hour (UTC, of event_time)",
        },
        check_specs=silver_check_specs(key, contract),
    )
    def _silver(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        root = lake.lake()
        keys = list(context.partition_keys)
        result = refresh_silver(root, contract, hours=keys, settings=settings)
        record_refresh(context, root, result)
        outcomes = run_silver_checks(
            root,
            contract,
            result.hour_keys,
            result.input_versions.get(contract.bronze_path),
            settings.partitions_start,
        )
        return dg.MaterializeResult(
            metadata=run_metadata(result, keys),
            check_results=[check_result(name, o) for name, o in outcomes.items()],
        )

    return _silver


def build_silver_assets(
    contracts: list[TopicContract],
    partitions_def: dg.PartitionsDefinition,
    settings: RefreshSettings,
) -> list[dg.AssetsDefinition]:
    """One silver asset per topic."""
    return [build_silver_asset(c, partitions_def, settings) for c in contracts]
