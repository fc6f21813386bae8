"""The whole-table audit of every bronze table as asset checks, run daily by ``bronze_audit``.

The checks that run with each ingestion batch (:mod:`assets.bronze.checks`) look only at what the
batch added, so a gap or duplicate is reported once, by the run that made it. These checks apply
the same rules to the whole table (:mod:`tidelake.quality.audit`, ``window=None``), O(history),
so an old problem is reported again every day until it is repaired or accepted (``tidelake
ingest --accept-gap``). Where to see it: the ``bronze_audit`` run and each check's history.
The asset's Checks tab shows a check's result for the asset's latest materialization only, so
it shows these as not evaluated once the next micro-batch lands (Dagster's rule, see
dagster-io/dagster#33967).

* ``audit_unique_kafka_coordinates``: every ``(_topic, _partition, _offset)`` in bronze once;
* ``audit_contiguous_offsets``: every consumed offset in exactly one of bronze and quarantine, or
  recorded as skipped or accepted (counted in the metadata, not failures).

Severity WARN and not blocking, on purpose: what an audit finds is already in the table, old,
and either was reported (ERROR, blocking) by the batch that made it or was made outside
ingestion (a file deleted by hand, a writer outside the protocol). Blocking on it would stop new,
correct ingestion, and everything downstream of bronze, for a problem that stopping cannot fix;
the way out is a repair or ``--accept-gap``. An old problem must not block new data, it must be
seen: a WARN result every day until then. These checks are never part of an ingestion run (an
O(history) read per micro-batch): ``pipeline_defs.definitions`` keeps them out of the ingest jobs.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
from collections.abc import Iterator, Sequence

import dagster as dg

from assets.bronze.checks import CONTIGUOUS_OFFSETS, UNIQUE_COORDINATES
from assets.bronze.ingest import bronze_key
from resources.kafka import KafkaClient
from resources.lake import LakeResource
from tidelake.contracts import TopicContract
from tidelake.quality import audit
from tidelake.quality.outcome import CheckOutcome

AUDIT_UNIQUE_COORDINATES = f"audit_{UNIQUE_COORDINATES}"
AUDIT_CONTIGUOUS_OFFSETS = f"audit_{CONTIGUOUS_OFFSETS}"
AUDIT_CHECK_NAMES: tuple[str, ...] = (AUDIT_UNIQUE_COORDINATES, AUDIT_CONTIGUOUS_OFFSETS)

AUDITED: dict[str, str] = {
    AUDIT_UNIQUE_COORDINATES: audit.UNIQUE_COORDINATES,
    AUDIT_CONTIGUOUS_OFFSETS: audit.CONTIGUOUS_OFFSETS,
}
"""Asset check name → the :mod:`tidelake.quality.audit` check it runs."""

LISTED_IN_DESCRIPTION = 5
"""Offending items named in a failed result's description (the metadata lists more)."""


def audit_check_specs(contract: TopicContract) -> list[dg.AssetCheckSpec]:
    """The audit check specs of one bronze asset (WARN, not blocking: see the module docstring)."""
    key = bronze_key(contract)
    return [
        dg.AssetCheckSpec(
            AUDIT_UNIQUE_COORDINATES,
            asset=key,
            blocking=False,
            description=(
                "Whole-table audit (daily): every (_topic, _partition, _offset) in bronze occurs "
                "once, however long ago it was written. Warns; never blocks ingestion."
            ),
        ),
        dg.AssetCheckSpec(
            AUDIT_CONTIGUOUS_OFFSETS,
            asset=key,
            blocking=False,
            description=(
                "Whole-table audit (daily): per partition, every offset up to the stored "
                "position is in exactly one of bronze and quarantine, or recorded as skipped "
                "(markers, aborted, compacted) or accepted as lost. Warns; never blocks ingestion."
            ),
        ),
    ]


def audit_check_keys(contracts: Sequence[TopicContract]) -> list[dg.AssetCheckKey]:
    """The keys of every audit check of ``contracts`` (what the ``bronze_audit`` job selects)."""
    return [dg.AssetCheckKey(bronze_key(c), name) for c in contracts for name in AUDIT_CHECK_NAMES]


def audit_result(key: dg.AssetCheckKey, outcome: CheckOutcome) -> dg.AssetCheckResult:
    """The WARN result of one audit outcome; a failure's description names what is wrong."""
    listed = [] if outcome.passed else audit.problems(outcome.metadata)
    description = outcome.description
    if listed:
        more = len(listed) - LISTED_IN_DESCRIPTION
        description += ": " + "; ".join(listed[:LISTED_IN_DESCRIPTION])
        description += f"; and {more} more in the metadata" if more > 0 else ""
    return dg.AssetCheckResult(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=outcome.passed,
        description=description,
        metadata=outcome.metadata,
        severity=dg.AssetCheckSeverity.WARN,
    )


def build_audit_check(contract: TopicContract) -> dg.AssetChecksDefinition:
    """The audit checks of one topic's bronze table, in one op (one op per topic, so one topic's
    unreadable table does not stop the others' audit)."""

    @dg.multi_asset_check(
        specs=audit_check_specs(contract),
        name=f"audit_{contract.table_name}",
        can_subset=True,
        description=f"Whole-table audit of bronze/{contract.table_name} with quarantine.",
    )
    def _audit(
        context: dg.AssetCheckExecutionContext,
        lake: LakeResource,
        kafka: dg.ResourceParam[KafkaClient],
    ) -> Iterator[dg.AssetCheckResult]:
        the_lake, settings = lake.lake(), kafka.settings()
        for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
            outcome = audit.WHOLE_TABLE_CHECKS[AUDITED[key.name]](the_lake, contract, settings)
            context.log.info(f"{key.name} of {contract.name}: {outcome.description}")
            yield audit_result(key, outcome)

    return _audit


def build_audit_checks(contracts: Sequence[TopicContract]) -> list[dg.AssetChecksDefinition]:
    """One audit op (both audit checks) per topic."""
    return [build_audit_check(c) for c in contracts]
