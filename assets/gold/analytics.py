"""Business analytics assets: ``gold/fraud_flags`` and ``gold/sensor_anomalies`` (hourly
partitioned) and ``gold/top_products_last_hour`` (one ranking appended per refresh).

Thin wrappers over :mod:`tidelake.layers.fraud` and :mod:`tidelake.layers.top_products`; the
ingestion worker refreshes the same tables after its batches (``pipeline_defs.derive_worker``).
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
from typing import Any

import dagster as dg

from assets.bronze.ingest import table_schema
from assets.silver import silver_key
from assets.silver.metadata import record_refresh, run_metadata
from resources.lake import LakeResource
from tidelake.contracts import TOPICS
from tidelake.layers.anomalies import SENSOR_ANOMALIES_PATH, Anomalies
from tidelake.layers.cohorts import (
    COHORT_RETENTION_PATH,
    USER_ACTIVITY_PATH,
    USER_ACTIVITY_SCHEMA,
    USER_TOPICS,
    CohortResult,
    refresh_cohorts,
    refresh_user_activity,
)
from tidelake.layers.fraud import FRAUD_FLAGS_PATH, refresh_fraud_flags
from tidelake.layers.top_products import TOP_PRODUCTS_PATH, RankingResult, refresh_top_products
from tidelake.quality.evaluate import evaluate
from tidelake.quality.evaluate import metadata as quality_metadata
from tidelake.settings import RefreshSettings
from tidelake.transform.anomalies import SENSOR_ANOMALIES_SCHEMA
from tidelake.transform.cohorts import COHORT_RETENTION_SCHEMA
from tidelake.transform.fraud import FRAUD_FLAGS_SCHEMA, FraudThresholds
from tidelake.transform.top_products import TOP_PRODUCTS_SCHEMA

FRAUD_FLAGS_KEY = dg.AssetKey(FRAUD_FLAGS_PATH.split("/"))
SENSOR_ANOMALIES_KEY = dg.AssetKey(SENSOR_ANOMALIES_PATH.split("/"))
TOP_PRODUCTS_KEY = dg.AssetKey(TOP_PRODUCTS_PATH.split("/"))
USER_ACTIVITY_KEY = dg.AssetKey(USER_ACTIVITY_PATH.split("/"))
COHORT_RETENTION_KEY = dg.AssetKey(COHORT_RETENTION_PATH.split("/"))
ANALYTICS_KEYS: tuple[dg.AssetKey, ...] = (
    FRAUD_FLAGS_KEY,
    SENSOR_ANOMALIES_KEY,
    TOP_PRODUCTS_KEY,
    USER_ACTIVITY_KEY,
)
"""The hourly (and unpartitioned) analytics assets of ``refresh_derived``; the daily
``gold/cohort_retention`` has its own job (a job holds one partitions definition)."""

ANOMALY_COLUMN_DOCS = {
    "event_id": "the anomalous reading",
    "device_id": "its device",
    "site": "the device's site",
    "metric": "temperature, humidity, ...",
    "event_time": "when it was measured (UTC)",
    "value": "the reading",
    "expected": "the trailing median of the device's metric",
    "score": "0-1: how anomalous",
    "method": "robust_zscore or isolation_forest",
    "reason": "a sentence with the figures",
    "detected_at": "when the refresh that found it ran",
    "event_date": "UTC date of event_time (Delta partition)",
    "event_hour": "UTC hour of event_time (Delta partition)",
}

FRAUD_COLUMN_DOCS = {
    "event_id": "the flagged purchase event",
    "order_id": "its order",
    "user_id": "its buyer",
    "event_time": "when the purchase happened (UTC)",
    "rule": "velocity, ip_sharing, payment_hopping, high_value, purchase_without_browsing or "
    "rapid_checkout",
    "score": "0-1: how far past the rule's threshold",
    "reason": "a sentence naming the figures that triggered the rule",
    "detected_at": "when the refresh that flagged it ran",
    "event_date": "UTC date of event_time (Delta partition)",
    "event_hour": "UTC hour of event_time (Delta partition)",
}
TOP_COLUMN_DOCS = {
    "as_of": "the refresh time; the latest ranking is the rows with the greatest as_of",
    "window_start": "as_of - 1 hour",
    "rank": "1-10 by views desc, product_id asc",
    "product_id": "the product",
    "views": "page_view events of the product with event_time in [window_start, as_of)",
    "unique_viewers": "distinct users among those views",
    "event_date": "UTC date of as_of (Delta partition)",
    "event_hour": "UTC hour of as_of (Delta partition)",
}


def ranking_metadata(ranking: RankingResult | None) -> dict[str, Any]:
    """A ranking's figures (``status`` unchanged when page views did not change)."""
    if ranking is None:
        return {"status": "unchanged"}
    return {
        "status": "appended",
        "as_of": ranking.as_of.isoformat(),
        "rows": ranking.rows,
        "dagster/row_count": ranking.rows,
        "delta_version": ranking.version,
        "page_views_version": ranking.page_views_version,
    }


COHORT_COLUMN_DOCS = {
    "cohort_date": "UTC day of the users' first event on any user topic (Delta partition)",
    "day_offset": "days after cohort_date, 0-30",
    "cohort_size": "users of the cohort",
    "retained_users": "cohort users with >= 1 event on cohort_date + day_offset",
    "retention_rate": "retained_users / cohort_size",
    "retained_users_unbounded": "cohort users with >= 1 event on or after that day",
    "retention_rate_unbounded": "retained_users_unbounded / cohort_size",
}


def cohort_metadata(result: CohortResult) -> dict[str, Any]:
    """A cohort refresh's figures."""
    return {
        "cohorts_rewritten": len(result.cohorts),
        "rows_written": result.rows,
        "delta_version": -1 if result.version is None else result.version,
        "user_activity_version": -1 if result.activity_version is None else result.activity_version,
        "as_of": result.as_of.isoformat(),
    }


def build_cohort_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``gold/cohort_retention``, daily partitioned by cohort day."""

    @dg.asset(
        key=COHORT_RETENTION_KEY,
        description=(
            "Day 0-30 retention of first-activity cohorts (UTC day of a user's first event on any "
            "user topic), bounded and on-or-after; one partition per cohort day. A refresh "
            "rewrites exactly the cohorts whose rows changed (late data, a new day)."
        ),
        deps=[USER_ACTIVITY_KEY],
        metadata={
            "dagster/column_schema": table_schema(COHORT_RETENTION_SCHEMA, COHORT_COLUMN_DOCS),
            "dagster/table_name": COHORT_RETENTION_PATH,
            "partitioned_by": "cohort_date",
        },
        group_name="gold",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"delta", "polars"},
    )
    def _cohort_retention(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> dg.MaterializeResult:
        result = refresh_cohorts(lake.lake())
        keys = set(context.partition_keys)
        for day in result.cohorts:
            if day.isoformat() in keys:
                context.add_asset_metadata({"status": "rewritten"}, partition_key=day.isoformat())
        context.log.info(
            f"rewrote {len(result.cohorts)} cohort(s), {result.rows} rows, as of {result.as_of}"
        )
        return dg.MaterializeResult(metadata=cohort_metadata(result))

    return _cohort_retention


def build_analytics_assets(
    partitions_def: dg.PartitionsDefinition,
    settings: RefreshSettings,
    thresholds: FraudThresholds,
) -> list[dg.AssetsDefinition]:
    """``gold/fraud_flags``, ``gold/sensor_anomalies`` and ``gold/top_products_last_hour``."""
    purchases, views, clicks, sensors = (
        TOPICS[n]
        for n in ("shop.purchases", "shop.page_views", "shop.clicks", "infra.sensor_readings")
    )
    anomalies = Anomalies()

    @dg.asset(
        key=FRAUD_FLAGS_KEY,
        description=(
            "One row per (purchase event, fraud rule that flagged it) with a score and a reason "
            "naming the figures; rules and thresholds in docs/ANALYTICS.md. Hour partitions of "
            "the purchase's event_time; a late page view re-evaluates the purchases it precedes."
        ),
        deps=[silver_key(purchases), silver_key(views), silver_key(clicks)],
        metadata={
            "dagster/column_schema": table_schema(FRAUD_FLAGS_SCHEMA, FRAUD_COLUMN_DOCS),
            "dagster/table_name": FRAUD_FLAGS_PATH,
            "partitioned_by": "event_date, event_hour (UTC, of the purchase's event_time)",
        },
        group_name="gold",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"delta", "polars"},
    )
    def _fraud_flags(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        root = lake.lake()
        result = refresh_fraud_flags(
            root, list(context.partition_keys), settings=settings, thresholds=thresholds
        )
        keys = record_refresh(context, root, result)
        quality = quality_metadata(evaluate(root, result.hour_keys), "fraud")
        return dg.MaterializeResult(metadata=run_metadata(result, keys) | quality)

    @dg.asset(
        key=SENSOR_ANOMALIES_KEY,
        description=(
            "One row per (sensor reading, method) found anomalous: robust_zscore (trailing "
            "median and MAD) and isolation_forest (a model trained on the trailing history; its "
            "version and training window in the metadata). Hour partitions of event_time."
        ),
        deps=[silver_key(sensors)],
        metadata={
            "dagster/column_schema": table_schema(SENSOR_ANOMALIES_SCHEMA, ANOMALY_COLUMN_DOCS),
            "dagster/table_name": SENSOR_ANOMALIES_PATH,
            "partitioned_by": "event_date, event_hour (UTC, of event_time)",
        },
        group_name="gold",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"delta", "polars", "scikitlearn"},
    )
    def _sensor_anomalies(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> dg.MaterializeResult:
        root = lake.lake()
        result = anomalies.refresh(root, list(context.partition_keys), settings=settings)
        keys = record_refresh(context, root, result)
        quality = quality_metadata(evaluate(root, result.hour_keys), "anomalies")
        return dg.MaterializeResult(
            metadata=run_metadata(result, keys) | anomalies.model_metadata() | quality
        )

    @dg.asset(
        key=TOP_PRODUCTS_KEY,
        description=(
            "The 10 most viewed products of the hour before each refresh, one ranking appended "
            "per page-view change (exact, from silver); latest = the greatest as_of."
        ),
        deps=[silver_key(views)],
        metadata={
            "dagster/column_schema": table_schema(TOP_PRODUCTS_SCHEMA, TOP_COLUMN_DOCS),
            "dagster/table_name": TOP_PRODUCTS_PATH,
            "partitioned_by": "event_date, event_hour (UTC, of as_of)",
        },
        group_name="gold",
        kinds={"delta", "polars"},
    )
    def _top_products(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> dg.MaterializeResult:
        ranking = refresh_top_products(lake.lake())
        context.log.info(
            "no page-view change since the last ranking"
            if ranking is None
            else f"ranking as of {ranking.as_of.isoformat()}: {ranking.rows} products"
        )
        return dg.MaterializeResult(metadata=ranking_metadata(ranking))

    @dg.asset(
        key=USER_ACTIVITY_KEY,
        description=(
            "Each user active in an hour once (user_id, event_date, event_hour), from every user "
            "topic: the compact history that cohorts are computed from."
        ),
        deps=[silver_key(c) for c in USER_TOPICS],
        metadata={
            "dagster/column_schema": table_schema(
                USER_ACTIVITY_SCHEMA,
                {
                    "user_id": "the user",
                    "event_date": "UTC date (Delta partition)",
                    "event_hour": "UTC hour (Delta partition)",
                },
            ),
            "dagster/table_name": USER_ACTIVITY_PATH,
        },
        group_name="gold",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"delta", "polars"},
    )
    def _user_activity(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> dg.MaterializeResult:
        root = lake.lake()
        result = refresh_user_activity(root, list(context.partition_keys), settings=settings)
        keys = record_refresh(context, root, result)
        return dg.MaterializeResult(metadata=run_metadata(result, keys))

    return [_fraud_flags, _sensor_anomalies, _top_products, _user_activity]
