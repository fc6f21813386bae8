"""Ingestion jobs: one per topic and one over all topics; which one runs depends on the model.

* ``runs``: the per-topic sensors launch ``ingest_<table>``, one run per topic and batch;
* ``tick``: the pending-topics sensor launches ``ingest_bronze`` with the bronze assets of the
  pending topics selected, one run per tick;
* ``worker``: no sensor launches either (the worker ingests); both stay for manual catch-up and
  the fallback schedule.

Concurrency: the instance allows one run per value of ``INGEST_TOPIC_TAG``. Each per-topic job
carries its topic as that tag, so two runs of one topic never overlap, whoever launches them.
``ingest_bronze`` covers all topics and cannot carry one per-topic tag; it is tagged ``*all*``, so
at most one all-topics run is in progress. It may overlap a per-topic run (or the worker); the
engine is safe under that race (the second committer re-reads the Delta log and skips what is
committed), it just wastes some work, which is why each model has one launcher only.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import dagster as dg

from assets.bronze import bronze_key
from assets.bronze.audit import audit_check_keys
from sensors import ALL_TOPICS_TAG_VALUE
from tidelake.contracts import TopicContract
from tidelake.dagster_home import INGEST_TOPIC_TAG

ALL_TOPICS_JOB_NAME = "ingest_bronze"

AssetJob: TypeAlias = Any
"""What ``define_asset_job`` returns; Dagster does not export that type publicly."""


def ingest_job_name(contract: TopicContract) -> str:
    return f"ingest_{contract.table_name}"


def without_audit(selection: dg.AssetSelection, contracts: list[TopicContract]) -> Any:
    """``selection`` minus the whole-table audit checks of ``contracts``.

    Why: selecting an asset selects every check that targets it, so an ingest job would also
    run the O(history) audit on every micro-batch; the audit has its own daily job.
    """
    return selection - dg.AssetSelection.checks(*audit_check_keys(contracts))


def topic_ingest_job(contract: TopicContract) -> AssetJob:
    """Drain one topic into its bronze table (plus quarantine) and run its per-batch checks."""
    return dg.define_asset_job(
        ingest_job_name(contract),
        selection=without_audit(dg.AssetSelection.assets(bronze_key(contract)), [contract]),
        description=f"One exactly-once micro-batch of `{contract.name}` into bronze.",
        # One asset, one step: running it in the run process saves a second Python start-up
        # (2-6 s measured), which is most of a micro-batch's latency.
        executor_def=dg.in_process_executor,
        tags={"tidelake/layer": "bronze"},
        run_tags={INGEST_TOPIC_TAG: contract.name},
    )


def all_topics_job(contracts: list[TopicContract]) -> AssetJob:
    """Drain every topic once, or the topics a run selects (the ``tick`` sensor's runs, manual
    catch-up, the fallback schedule)."""
    return dg.define_asset_job(
        ALL_TOPICS_JOB_NAME,
        selection=without_audit(
            dg.AssetSelection.assets(*(bronze_key(c) for c in contracts)), contracts
        ),
        description="One micro-batch of every (selected) topic into bronze, one after another.",
        # One process for every topic of the run, the assets in turn: a step subprocess per
        # topic would cost a Python start-up each (2-6 s measured), which the tick model exists
        # to avoid. The topics' batches are short once caught up.
        executor_def=dg.in_process_executor,
        tags={"tidelake/layer": "bronze"},
        run_tags={INGEST_TOPIC_TAG: ALL_TOPICS_TAG_VALUE},
    )
