"""Silver and gold refreshed by the ingestion worker, recorded on the Dagster instance.

One round (:class:`DerivedRefresher`, run by :class:`tidelake.layers.follow.RefreshLoop` after
bronze batches): every silver table's stale hours, its checks, then ``gold/events_per_minute`` and
its check, then ``gold/events_per_hour``, ``gold/fraud_flags``, ``gold/user_activity`` (and, at most
once a minute, ``gold/sensor_anomalies`` and ``gold/cohort_retention``) and a new
``gold/top_products_last_hour`` ranking when page views changed — the same functions, checks and
figures as a ``refresh_derived`` run's assets, in the same order. Each hour written is recorded as a
runless materialization of its hour partition (the partition grid shows a late hour re-materialized
the moment the worker rewrites it) with the per-partition figures of :mod:`assets.silver.metadata`,
and every check's outcome as a runless evaluation.

Silver tables are refreshed three at a time (Polars and delta-rs release the GIL), each with its
blocking checks; the WARN checks (``complete_vs_ledger``, ``events_before_partitions_start``) run
after gold, at most every 30 s per topic over every hour written since, because they never gate
gold and a ledger comparison in every round would only delay the next one.

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
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from assets.gold import EVENTS_MATCH_SILVER, EVENTS_PER_HOUR_KEY, EVENTS_PER_MINUTE_KEY
from assets.gold.analytics import (
    COHORT_RETENTION_KEY,
    FRAUD_FLAGS_KEY,
    SENSOR_ANOMALIES_KEY,
    TOP_PRODUCTS_KEY,
    USER_ACTIVITY_KEY,
    cohort_metadata,
    ranking_metadata,
)
from assets.gold.checks import check_events_match_silver
from assets.silver import COMPLETE_VS_LEDGER, EVENTS_BEFORE_PARTITIONS_START, silver_key
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
from tidelake.layers.anomalies import Anomalies
from tidelake.layers.cohorts import refresh_cohorts, refresh_user_activity
from tidelake.layers.follow import RefreshRoundError
from tidelake.layers.fraud import refresh_fraud_flags
from tidelake.layers.top_products import refresh_top_products
from tidelake.quality.outcome import CheckOutcome
from tidelake.settings import RefreshSettings
from tidelake.transform.fraud import FraudThresholds

log = logging.getLogger(__name__)

MAX_ROUND_HOURS = 24
"""Hours a round writes per table at most (newest first); the rest wait for the next round."""
SILVER_PARALLELISM = 3
"""Silver tables refreshed at once in a round (six topics on two cores)."""
WARN_CHECK_INTERVAL_SECONDS = 30.0
"""A topic's WARN checks (ledger completeness, events before the partition start) run at most
this often in the worker, over every hour written since they last ran."""
WARN_CHECKS: frozenset[str] = frozenset({COMPLETE_VS_LEDGER, EVENTS_BEFORE_PARTITIONS_START})
ANOMALY_INTERVAL_SECONDS = 60.0
"""The worker refreshes ``gold/sensor_anomalies`` at most this often."""
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
    evaluation (:func:`check_events`)."""
    allowed = set(partition_keys)
    written = [h for h in result.hour_keys if h in allowed]
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
    return [*events, *check_events(key, outcomes, blocking)]


def check_events(
    key: dg.AssetKey, outcomes: Mapping[str, CheckOutcome], blocking: frozenset[str]
) -> list[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """Each check's runless evaluation: ERROR and blocking for ``blocking`` checks, else WARN
    (the severities of the assets' own checks)."""
    return [
        dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=name,
            passed=outcome.passed,
            metadata=outcome.metadata,
            severity=dg.AssetCheckSeverity.ERROR
            if name in blocking
            else dg.AssetCheckSeverity.WARN,
            description=outcome.description,
            blocking=name in blocking,
        )
        for name, outcome in outcomes.items()
    ]


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
        parallelism: silver tables refreshed at once (Polars and delta-rs release the GIL).
        warn_interval: seconds between evaluations of a topic's WARN checks.
        thresholds: the fraud rules' thresholds (``TIDELAKE_FRAUD_*``).
        anomaly_interval: seconds between refreshes of ``gold/sensor_anomalies`` (its features
            read hours of trailing readings; no freshness goal asks for it every round).
    """

    def __init__(
        self,
        lake: Lake,
        contracts: Sequence[TopicContract],
        settings: RefreshSettings,
        partitions_def: dg.TimeWindowPartitionsDefinition,
        report: Report | None = None,
        max_hours: int = MAX_ROUND_HOURS,
        parallelism: int = SILVER_PARALLELISM,
        warn_interval: float = WARN_CHECK_INTERVAL_SECONDS,
        thresholds: FraudThresholds | None = None,
        anomaly_interval: float = ANOMALY_INTERVAL_SECONDS,
    ) -> None:
        self.lake = lake
        self.contracts = list(contracts)
        self.gold_contracts = list(TOPICS.values())
        self.settings = settings
        self.partitions_def = partitions_def
        self.report = report
        self.max_hours = max_hours
        self.parallelism = parallelism
        self.warn_interval = warn_interval
        self.thresholds = thresholds or FraudThresholds()
        self.anomalies = Anomalies()
        self.anomaly_interval = anomaly_interval
        self.anomalies_at = 0.0
        self.cohorts_at = 0.0
        self.pending_warn: dict[str, set[str]] = {}
        """Topic → hours written since its WARN checks last ran."""
        self.warned_at: dict[str, float] = {}
        self.last: dict[str, RefreshResult] = {}
        """The latest refresh of each table that wrote something (for logs and tests)."""

    def __call__(self) -> bool:
        more = False
        blocked: list[str] = []
        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="refresh-silver") as pool:
            done = list(pool.map(self._silver, self.contracts))
        for contract, result, outcomes in done:
            more |= not result.complete
            if not result.hours:
                continue
            self.pending_warn.setdefault(contract.name, set()).update(result.hour_keys)
            self._record(silver_key(contract), result, outcomes, BLOCKING)
            blocked += [
                f"{contract.silver_path} {name}: {o.description}"
                for name, o in outcomes.items()
                if not o.passed
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
        fraud = refresh_fraud_flags(
            self.lake, settings=self.settings, thresholds=self.thresholds, max_hours=self.max_hours
        )
        more |= not fraud.complete
        if fraud.hours:
            self._record(FRAUD_FLAGS_KEY, fraud, {}, frozenset())
        if not self.anomalies_at or time.monotonic() - self.anomalies_at >= self.anomaly_interval:
            anomalies = self.anomalies.refresh(
                self.lake, settings=self.settings, max_hours=self.max_hours
            )
            self.anomalies_at = time.monotonic()
            more |= not anomalies.complete
            if anomalies.hours:
                self._record(SENSOR_ANOMALIES_KEY, anomalies, {}, frozenset())
        activity = refresh_user_activity(
            self.lake, settings=self.settings, max_hours=self.max_hours
        )
        more |= not activity.complete
        if activity.hours:
            self._record(USER_ACTIVITY_KEY, activity, {}, frozenset())
        if time.monotonic() - self.cohorts_at >= self.anomaly_interval or not self.cohorts_at:
            self.cohorts_at = time.monotonic()
            self._cohorts()
        ranking = refresh_top_products(self.lake)
        if ranking is not None and self.report is not None:
            self._report(
                dg.AssetMaterialization(
                    TOP_PRODUCTS_KEY,
                    description="ranking appended by the ingestion worker",
                    metadata=ranking_metadata(ranking) | {"tidelake/refreshed_by": WORKER_SOURCE},
                ),
                "gold/top_products_last_hour",
            )
        self._warn_checks(force=not more)
        return more

    def _cohorts(self) -> None:
        """Rewrite the cohorts that changed; one runless materialization per cohort day."""
        result = refresh_cohorts(self.lake)
        if not result.cohorts or self.report is None:
            return
        for day in result.cohorts:
            self._report(
                dg.AssetMaterialization(
                    COHORT_RETENTION_KEY,
                    partition=day.isoformat(),
                    description=f"cohort {day.isoformat()} rewritten by the ingestion worker",
                    metadata=cohort_metadata(result) | {"tidelake/refreshed_by": WORKER_SOURCE},
                ),
                "gold/cohort_retention",
            )

    def _silver(
        self, contract: TopicContract
    ) -> tuple[TopicContract, RefreshResult, dict[str, CheckOutcome]]:
        """One topic's silver refresh and its blocking checks over the hours written."""
        result = refresh_silver(
            self.lake, contract, settings=self.settings, max_hours=self.max_hours
        )
        outcomes = (
            run_silver_checks(
                self.lake,
                contract,
                result.hour_keys,
                result.input_versions.get(contract.bronze_path),
                self.settings.partitions_start,
                names=BLOCKING,
            )
            if result.hours
            else {}
        )
        return contract, result, outcomes

    def _warn_checks(self, force: bool) -> None:
        """The WARN silver checks over the hours written since their last evaluation, at most
        every ``warn_interval`` seconds per topic: they never gate gold, so they run after it,
        and a ledger comparison in every round would only delay the next round. Not while a
        backlog is being worked through (``force`` False); once it is done, they run."""
        now = time.monotonic()
        for contract in self.contracts:
            hours = self.pending_warn.get(contract.name)
            if not hours or not force:
                continue
            if now - self.warned_at.get(contract.name, -1e9) < self.warn_interval:
                continue
            table = self.lake.open(contract.bronze_path)
            outcomes = run_silver_checks(
                self.lake,
                contract,
                sorted(hours),
                None if table is None else table.version(),
                self.settings.partitions_start,
                names=WARN_CHECKS,
            )
            self.pending_warn[contract.name] = set()
            self.warned_at[contract.name] = now
            if self.report is None:
                continue
            for event in check_events(silver_key(contract), outcomes, frozenset()):
                self._report(event, contract.silver_path)

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
            if not self._report(event, result.output):
                return

    def _report(self, event: dg.AssetMaterialization | dg.AssetCheckEvaluation, what: str) -> bool:
        assert self.report is not None
        try:
            self.report(event)
        except Exception:
            # The refresh is durable in the lake; a lost event is only a gap in Dagster's view.
            log.exception("%s: could not record the refresh in Dagster", what)
            return False
        return True

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
    return DerivedRefresher(
        lake,
        contracts,
        settings,
        hourly_partitions(settings),
        report,
        thresholds=FraudThresholds.from_env(os.environ),
    )
