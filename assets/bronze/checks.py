"""Asset checks of every bronze table: names, specs, results from :mod:`tidelake.quality.bronze`.

Each check covers what the batch that just ran accounted for (``BatchReport.window``), not the
whole history, so it costs O(batch): the coordinate checks read the window's offsets plus the one
below it, the schema check the rows the batch wrote. A failure is therefore reported by the run
that wrote the bad batch and not by the runs after it; the whole-table audit (the same functions
without a window) finds it again until it is repaired or accepted (``tidelake ingest
--accept-gap``). A run that added nothing passes the coordinate checks without reading data.

All three stay blocking with ERROR severity, checked one by one:

* ``unique_kafka_coordinates``: silver keeps one row per ``event_id``, so silver itself would
  survive a record written twice, but gold's ``duplicates`` (bronze deliveries - events) would
  not, and a repeat means the exactly-once protocol broke: stop before anything builds on it.
* ``contiguous_offsets``: a lost record makes every aggregate of its hour wrong without a trace;
  markers, aborted transactions and compaction (``skipped``) and operator-accepted losses
  (``accepted``, with an audit) are not failures, so what remains is real loss.
* ``contract_schema``: rows off the contract would reach silver and gold typed wrongly.
"""

from __future__ import annotations

import dagster as dg

from tidelake.contracts import TopicContract
from tidelake.quality import bronze as checks
from tidelake.quality.bronze import (
    BRONZE_CHECK_NAMES,
    CONTIGUOUS_OFFSETS,
    CONTRACT_SCHEMA,
    UNIQUE_COORDINATES,
)
from tidelake.quality.bronze import check_batch as run_bronze_checks


def bronze_check_specs(key: dg.AssetKey, contract: TopicContract) -> list[dg.AssetCheckSpec]:
    """The check specs of one bronze asset."""
    return [
        dg.AssetCheckSpec(
            UNIQUE_COORDINATES,
            asset=key,
            blocking=True,
            description=(
                "(_topic, _partition, _offset) is unique among the offsets this run accounted "
                "for: no record was written twice."
            ),
        ),
        dg.AssetCheckSpec(
            CONTIGUOUS_OFFSETS,
            asset=key,
            blocking=True,
            description=(
                "Per partition, every offset this run accounted for (and the one before) is in "
                "exactly one of bronze and quarantine, or recorded in the commit log as skipped "
                "(markers, aborted, compacted) or accepted as lost: no record was lost."
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


__all__ = [
    "BRONZE_CHECK_NAMES",
    "CONTIGUOUS_OFFSETS",
    "CONTRACT_SCHEMA",
    "UNIQUE_COORDINATES",
    "bronze_check_specs",
    "check_result",
    "run_bronze_checks",
]
