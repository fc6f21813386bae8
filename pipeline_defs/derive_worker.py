"""Silver and gold refreshed by the ingestion worker, recorded on the Dagster instance.

One round (:class:`DerivedRefresher`, run by :class:`tidelake.layers.follow.RefreshLoop` after
bronze batches): every silver table's stale hours, its checks, then ``gold/events_per_minute``
and its check, then ``gold/events_per_hour`` — the same functions, checks and figures as a
``refresh_derived`` run's assets, in the same order. Each hour written is recorded as a runless
materialization of its hour partition (the partition grid shows a late hour re-materialized
the moment the worker rewrites it) with the per-partition figures of
:mod:`assets.silver.metadata`, and every check's outcome as a runless evaluation.

Blocking checks block as in a run: when a silver table's blocking check fails, the round records
it and stops before gold (:class:`~tidelake.layers.follow.RefreshRoundError`, so the loop backs
off and alerts); gold is refreshed once silver passes again.

A round writes at most :data:`MAX_ROUND_HOURS` hours per table, the newest first, so a backlog
of days (a first start over an old bronze, a long outage) is worked through in bounded rounds
while the open hour stays fresh.

The touched-partitions sensor stays on as the safety net: with the worker refreshing it waits
:data:`sensors.refresh.WORKER_GRACE_SECONDS` before it requests a run for stale hours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from assets.gold import EVENTS_MATCH_SILVER, EVENTS_PER_HOUR_KEY, EVENTS_PER_MINUTE_KEY
from assets.gold.checks import check_events_match_silver
from assets.silver import silver_key
from assets.silver.checks import BLOCKING, run_silver_checks
from assets.silver.metadata import partition_metadata, run_metadata
from sensors.refresh import partition_bounds
from tidelake.contracts import TOPICS, TopicContract
from tidelake.lake import Lake
from tidelake.layers import (
    RefreshResult,
    refresh_events_per_hour,
    refresh_events_per_minute,
    refresh_silver,
)
from tidelake.layers.follow import RefreshRoundError
from tidelake.quality.outcome import CheckOutcome
from tidelake.settings import RefreshSettings

log = logging.getLogger(__name__)

MAX_ROUND_HOURS = 24
"""Hours a round writes per table at most (newest first); the rest wait for the next round."""
WORKER_SOURCE = "ingestion_worker"
"""``tidelake/refreshed_by`` of the worker's materializations (runs have their run id)."""

Report = Callable[[dg.AssetMaterialization | dg.AssetCheckEvaluation], None]


def refresh_events(
    key: dg.AssetKey,
    result: RefreshResult,
    partition_keys: Sequence[str],
    outcomes: Mapping[str, CheckOutcome],
    blocking: frozenset[str],
) -> list[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """What one worker refresh records: a materialization per partition it wrote (hours outside
    ``partition_keys`` are counted in ``hours_written_outside_partitions``), then each check's
    evaluation (ERROR for ``blocking`` checks, else WARN, as the assets' checks)."""
    written = [h for h in result.hour_keys if h in set(partition_keys)]
    shared = run_metadata(result, written) | {"tidelake/refreshed_by": WORKER_SOURCE}
    per_partition = partition_metadata(result, written, {})
    events: list[dg.AssetMaterialization | dg.AssetCheckEvaluation] = [
        dg.AssetMaterialization(
            key,
            partition=hour,
            description=f"{result.output}: hour {hour} rewritten by the ingestion worker",
            metadata=shared | per_partition.get(hour, {}),
        )
        for hour in written
    ]
    for name, outcome in outcomes.items():
        severe = name in blocking
        events.append(
            dg.AssetCheckEvaluation(
                asset_key=key,
                check_name=name,
                passed=outcome.passed,
                metadata=outcome.metadata,
                severity=dg.AssetCheckSeverity.ERROR if severe else dg.AssetCheckSeverity.WARN,
                description=outcome.description,
                blocking=severe,
            )
        )
    return events


class DerivedRefresher:
    """One refresh round of silver and gold (module docstring); callable, True = more to do.

    Args:
        lake: where the tables live.
        contracts: the topics whose silver tables are refreshed (a worker following some topics
            refreshes their silver only); gold always reads every topic of the contract.
        settings: the refresh settings (partition start, lateness).
        partitions_def: the hourly partitions of the derived assets (what may be recorded).
        report: records one Dagster event (``instance.report_runless_asset_event``); None
            refreshes without recording.
        max_hours: hours per table per round.
    """

    def __init__(
        self,
        lake: Lake,
        contracts: Sequence[TopicContract],
        settings: RefreshSettings,
        partitions_def: dg.TimeWindowPartitionsDefinition,
        report: Report | None = None,
        max_hours: int = MAX_ROUND_HOURS,
    ) -> None:
        self.lake = lake
        self.contracts = list(contracts)
        self.gold_contracts = list(TOPICS.values())
        self.settings = settings
        self.partitions_def = partitions_def
        self.report = report
        self.max_hours = max_hours
        self.last: dict[str, RefreshResult] = {}
        """The latest refresh of each table that wrote something (for logs and tests)."""

    def __call__(self) -> bool:
        more = False
        blocked: list[str] = []
        for contract in self.contracts:
            result = refresh_silver(
                self.lake, contract, settings=self.settings, max_hours=self.max_hours
            )
            more |= not result.complete
            if not result.hours:
                continue
            outcomes = run_silver_checks(
                self.lake,
                contract,
                result.hour_keys,
                result.input_versions.get(contract.bronze_path),
                self.settings.partitions_start,
            )
            self._record(silver_key(contract), result, outcomes, BLOCKING)
            blocked += [
                f"{contract.silver_path} {name}: {o.description}"
                for name, o in outcomes.items()
                if name in BLOCKING and not o.passed
            ]
        if blocked:
            raise RefreshRoundError("blocking silver check(s) failed: " + "; ".join(blocked))
        minute = refresh_events_per_minute(
            self.lake, self.gold_contracts, settings=self.settings, max_hours=self.max_hours
        )
        more |= not minute.complete
        if minute.hours:
            outcome = check_events_match_silver(
                self.lake, self.gold_contracts, minute.hour_keys, minute.input_versions
            )
            gate = frozenset({EVENTS_MATCH_SILVER})
            self._record(EVENTS_PER_MINUTE_KEY, minute, {EVENTS_MATCH_SILVER: outcome}, gate)
            if not outcome.passed:
                raise RefreshRoundError(
                    f"blocking gold check failed: {EVENTS_MATCH_SILVER}: {outcome.description}"
                )
        hourly = refresh_events_per_hour(
            self.lake, settings=self.settings, max_hours=self.max_hours
        )
        more |= not hourly.complete
        if hourly.hours:
            self._record(EVENTS_PER_HOUR_KEY, hourly, {}, frozenset())
        return more

    def _record(
        self,
        key: dg.AssetKey,
        result: RefreshResult,
        outcomes: Mapping[str, CheckOutcome],
        blocking: frozenset[str],
    ) -> None:
        self.last[result.output] = result
        log.info(
            "%s: rewrote %d hour(s), %d rows, version %s%s",
            result.output,
            len(result.hours),
            result.rows,
            result.version,
            "" if result.complete else "; stale hours remain",
        )
        if self.report is None:
            return
        events = refresh_events(
            key, result, self.partition_keys(result.hour_keys), outcomes, blocking
        )
        for event in events:
            try:
                self.report(event)
            except Exception:
                # The refresh is durable in the lake; a lost event is only a gap in Dagster's view.
                log.exception("%s: could not record the refresh in Dagster", result.output)
                return

    def partition_keys(self, hours: Sequence[str]) -> list[str]:
        """``hours`` that are partitions of the derived assets now."""
        bounds = partition_bounds(self.partitions_def, datetime.now(UTC))
        if bounds is None:
            return []
        first, last = bounds
        return [h for h in hours if first <= h <= last]


def build_refresher(
    lake: Lake,
    contracts: Sequence[TopicContract],
    settings: RefreshSettings,
    instance: dg.DagsterInstance | None,
) -> DerivedRefresher:
    """The worker's refresher, recording on ``instance`` when given."""
    from pipeline_defs.partitions import hourly_partitions

    report: Any = None if instance is None else instance.report_runless_asset_event
    return DerivedRefresher(lake, contracts, settings, hourly_partitions(settings), report)
