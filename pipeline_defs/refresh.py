"""The derived layers' jobs: ``refresh_derived``, every silver and gold asset, run by the
touched-partitions sensor over a partition range; and ``refresh_warehouse``, the dbt models, run by
the warehouse sensor for the touched days.

Its runs carry ``tidelake/refresh=derived``: the sensor holds while one is queued or in progress
and backs off by the failure streak of that stream. Two overlapping runs would still be correct
(each refresh is one idempotent Delta commit that retries on conflict), just wasteful.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from assets.gold import GOLD_KEYS, freshness_keys
from assets.silver import silver_key
from pipeline_defs.jobs import AssetJob
from sensors.refresh import REFRESH_TAG, REFRESH_TAG_VALUE
from tidelake.contracts import TopicContract

REFRESH_JOB_NAME = "refresh_derived"


def derived_selection(contracts: Sequence[TopicContract], extra: Sequence[dg.AssetKey] = ()) -> Any:
    """Every silver and gold asset with its checks, plus ``extra``; not the freshness checks.

    Why not freshness: a check over partitioned assets that runs in its own step makes Dagster
    list every partition of each asset for data-version provenance (measured: 0.35 s per asset
    at 16,800 hours, ~3 s a run, growing by the hour). The touched-partitions sensor records
    them instead, and they can be run on their own.
    """
    keys = [*(silver_key(c) for c in contracts), *GOLD_KEYS, *extra]
    return dg.AssetSelection.assets(*keys) - dg.AssetSelection.checks(*freshness_keys(contracts))


def refresh_job(contracts: Sequence[TopicContract], extra: Sequence[dg.AssetKey] = ()) -> AssetJob:
    """``refresh_derived`` (see the module docstring)."""
    return dg.define_asset_job(
        REFRESH_JOB_NAME,
        selection=derived_selection(contracts, extra),
        description=(
            "Refresh the stale hours of silver and gold (one Delta commit per table) over the "
            "run's partition range, then run their checks (freshness excepted)."
        ),
        # One process for every asset of the run: a step subprocess per asset would cost a
        # Python start-up each (2-6 s measured, see pipeline_defs/jobs.py), more than a refresh
        # of a few hours takes.
        executor_def=dg.in_process_executor,
        tags={REFRESH_TAG: REFRESH_TAG_VALUE},
    )


WAREHOUSE_JOB_NAME = "refresh_warehouse"


def warehouse_job(marts: Sequence[dg.AssetKey]) -> AssetJob:
    """``refresh_warehouse``: the dbt models and their tests, for the days of the run's
    ``tidelake/dbt_window`` tag (none: a full build); launched by ``warehouse_sensor``."""
    return dg.define_asset_job(
        WAREHOUSE_JOB_NAME,
        selection=dg.AssetSelection.assets(*marts),
        description=(
            "Rebuild the dbt staging models and marts in the DuckDB warehouse for the days whose "
            "silver/gold changed (tag tidelake/dbt_window), then run the dbt tests."
        ),
        executor_def=dg.in_process_executor,
        tags={REFRESH_TAG: "warehouse"},
    )


COHORTS_JOB_NAME = "refresh_cohorts"
COHORTS_SCHEDULE_NAME = "cohort_retention_daily"


def cohorts_job_and_schedule(
    status: dg.DefaultScheduleStatus,
) -> tuple[AssetJob, Any]:
    """``refresh_cohorts`` (``gold/cohort_retention``, daily partitions) and its schedule at
    00:30 UTC: a new day gives every cohort of the last 30 days its next ``day_offset``. Late
    data touching an old day is picked up by the ingestion worker (at most once a minute) and by
    any run of this job, which rewrites every cohort whose rows changed."""
    job = dg.define_asset_job(
        COHORTS_JOB_NAME,
        selection=dg.AssetSelection.assets(dg.AssetKey(["gold", "cohort_retention"])),
        description="Recompute the cohort retention table; rewrites only the cohorts that changed.",
        executor_def=dg.in_process_executor,
        tags={REFRESH_TAG: "cohorts"},
    )
    schedule = dg.build_schedule_from_partitioned_job(
        job,
        name=COHORTS_SCHEDULE_NAME,
        hour_of_day=0,
        minute_of_hour=30,
        default_status=status,
    )
    return job, schedule
