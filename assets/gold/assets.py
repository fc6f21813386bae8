"""Gold assets: ``gold/events_per_minute`` (from every silver table) and ``gold/events_per_hour``
(from the per-minute table), hourly partitioned like silver.

Like silver, each materialization refreshes the stale hours among the run's partitions (plus
every stale hour outside the partition space) in one Delta commit; the per-minute table's check
runs over exactly the hours it wrote. Figures per partition: see :mod:`assets.silver.metadata`.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
import dagster as dg

from assets.bronze.ingest import table_schema
from assets.gold.analytics import ANALYTICS_KEYS
from assets.gold.checks import (
    EVENTS_MATCH_SILVER,
    check_events_match_silver,
    check_result,
    gold_check_specs,
)
from assets.silver import silver_key
from assets.silver.metadata import record_refresh, run_metadata
from resources.lake import LakeResource
from tidelake.contracts import TopicContract
from tidelake.layers import refresh_events_per_hour, refresh_events_per_minute
from tidelake.layers.gold import EVENTS_PER_HOUR_PATH, EVENTS_PER_MINUTE_PATH
from tidelake.settings import RefreshSettings
from tidelake.transform import EVENTS_PER_HOUR_SCHEMA, EVENTS_PER_MINUTE_SCHEMA

EVENTS_PER_MINUTE_KEY = dg.AssetKey(EVENTS_PER_MINUTE_PATH.split("/"))
EVENTS_PER_HOUR_KEY = dg.AssetKey(EVENTS_PER_HOUR_PATH.split("/"))
GOLD_KEYS: tuple[dg.AssetKey, ...] = (EVENTS_PER_MINUTE_KEY, EVENTS_PER_HOUR_KEY, *ANALYTICS_KEYS)
"""Every gold asset a refresh run selects (the windows, then the analytics over silver)."""

WINDOW_COLUMN_DOCS: dict[str, str] = {
    "topic": "logical topic name, e.g. shop.clicks",
    "event_type": "the event type",
    "events": "distinct events (event_ids) of the window",
    "late_events": (
        "events whose first delivery came > TIDELAKE_LATE_AFTER_SECONDS after event_time"
    ),
    "duplicates": "bronze deliveries - events (producer retries)",
    "event_date": "UTC date of window_start (Delta partition)",
    "event_hour": "UTC hour of window_start, 0-23 (Delta partition)",
}


def build_gold_assets(
    contracts: list[TopicContract],
    partitions_def: dg.PartitionsDefinition,
    settings: RefreshSettings,
) -> list[dg.AssetsDefinition]:
    """``gold/events_per_minute`` and ``gold/events_per_hour``."""

    @dg.asset(
        key=EVENTS_PER_MINUTE_KEY,
        description=(
            "Events per (topic, event_type, minute of event_time, UTC): distinct events, late "
            "events and duplicate deliveries, from every silver table; one hour partition per "
            "UTC hour."
        ),
        deps=[silver_key(c) for c in contracts],
        metadata={
            "dagster/column_schema": table_schema(
                EVENTS_PER_MINUTE_SCHEMA,
                WINDOW_COLUMN_DOCS | {"window_start": "the minute (UTC)"},
            ),
            "dagster/table_name": EVENTS_PER_MINUTE_PATH,
            "partitioned_by": "event_date, event_hour (UTC, of window_start)",
        },
        check_specs=gold_check_specs(EVENTS_PER_MINUTE_KEY),
        group_name="gold",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"delta", "polars"},
    )
    def _events_per_minute(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> dg.MaterializeResult:
        root = lake.lake()
        result = refresh_events_per_minute(
            root, contracts, hours=list(context.partition_keys), settings=settings
        )
        keys = record_refresh(context, lake.lake(), result)
        outcome = check_events_match_silver(
            root, contracts, result.hour_keys, result.input_versions
        )
        return dg.MaterializeResult(
            metadata=run_metadata(result, keys),
            check_results=[check_result(EVENTS_MATCH_SILVER, outcome)],
        )

    @dg.asset(
        key=EVENTS_PER_HOUR_KEY,
        description=(
            "Events per (topic, event_type, hour of event_time, UTC): the per-minute table "
            "summed by hour; one hour partition per UTC hour."
        ),
        deps=[EVENTS_PER_MINUTE_KEY],
        metadata={
            "dagster/column_schema": table_schema(
                EVENTS_PER_HOUR_SCHEMA, WINDOW_COLUMN_DOCS | {"window_start": "the hour (UTC)"}
            ),
            "dagster/table_name": EVENTS_PER_HOUR_PATH,
            "partitioned_by": "event_date, event_hour (UTC, of window_start)",
        },
        group_name="gold",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"delta", "polars"},
    )
    def _events_per_hour(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> dg.MaterializeResult:
        result = refresh_events_per_hour(
            lake.lake(), hours=list(context.partition_keys), settings=settings
        )
        keys = record_refresh(context, lake.lake(), result)
        return dg.MaterializeResult(metadata=run_metadata(result, keys))

    return [_events_per_minute, _events_per_hour]
