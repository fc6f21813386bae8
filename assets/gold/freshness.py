"""Per-partition freshness of the derived tables: ``fresh_within_sla`` on every silver and gold
asset.

Rule: an hour partition is *overdue* when input data for it has been waiting longer than the
table's SLA (``TIDELAKE_SILVER_SLA_SECONDS`` / ``TIDELAKE_GOLD_SLA_SECONDS``) without being
refreshed, counted from the oldest input commit, not yet refreshed, that touched the hour. For
gold the wait starts at the bronze commit (silver's pending hours count as gold's too), so the
gold SLA is end to end. An hour no input touched is never stale, so hours without data are never
reported, and an idle topic is fresh however long ago it last had data.

Why not Dagster's freshness checks: ``build_time_partition_freshness_checks`` expects the latest
hour to be materialized by a deadline (an idle topic's empty hours would fail) and
``FreshnessPolicy`` looks at the latest materialization of any partition (a late hour waiting for
its refresh would not show). Stale hours come from the Delta logs (:mod:`tidelake.layers.lineage`),
so this check needs neither.

Evaluated by the touched-partitions sensor, which records a runless evaluation whenever an
asset's result (fresh, or which hours are overdue) changes; the check function also runs on its
own (UI, ``dagster asset check``). Not in ``refresh_derived`` runs: see
:func:`pipeline_defs.refresh.derived_selection`.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from assets.gold.assets import EVENTS_PER_HOUR_KEY, EVENTS_PER_MINUTE_KEY
from assets.silver import silver_key
from resources.lake import LakeResource
from tidelake.contracts import TopicContract
from tidelake.lake import Lake
from tidelake.layers import (
    StaleHours,
    stale_gold_hours,
    stale_hourly_gold_hours,
    stale_silver_hours,
)
from tidelake.layers.anomalies import stale_anomaly_hours
from tidelake.layers.cohorts import stale_activity_hours
from tidelake.layers.fraud import stale_fraud_hours
from tidelake.layers.gold import EVENTS_PER_HOUR_PATH, EVENTS_PER_MINUTE_PATH
from tidelake.layers.lineage import commits_after, hours_of_commit, watermark_app_id
from tidelake.quality.outcome import MAX_LISTED, CheckOutcome, count
from tidelake.settings import RefreshSettings

FRESH_WITHIN_SLA = "fresh_within_sla"
FRESHNESS_CHECKS_NAME = "derived_freshness"
LOOKBACK_COMMITS = 500
"""Input commits read per table to date the oldest pending change. Beyond it the wait is at
least the oldest one read (a lower bound, so a long backlog still shows as overdue)."""


@dataclass(frozen=True)
class Staleness:
    """The stale hours of every derived table, read once (a sensor tick, a check)."""

    silver: dict[str, StaleHours]
    """Logical topic name → stale hours of its silver table."""
    events_per_minute: StaleHours
    events_per_hour: StaleHours
    fraud_flags: StaleHours = field(default_factory=lambda: StaleHours([], {}))
    sensor_anomalies: StaleHours = field(default_factory=lambda: StaleHours([], {}))
    user_activity: StaleHours = field(default_factory=lambda: StaleHours([], {}))
    """The analytics tables (their freshness is not checked: not a latency contract)."""

    @property
    def tables(self) -> list[StaleHours]:
        """Every derived table's stale hours."""
        return [
            *self.silver.values(),
            self.events_per_minute,
            self.events_per_hour,
            self.fraud_flags,
        ]

    @property
    def any(self) -> bool:
        tables = self.tables
        return any(s.hours for s in tables)


def read_staleness(lake: Lake, contracts: Sequence[TopicContract]) -> Staleness:
    """Every derived table's stale hours (the ``stale_*`` functions of :mod:`tidelake.layers`)."""
    return Staleness(
        silver={c.name: stale_silver_hours(lake, c) for c in contracts},
        events_per_minute=stale_gold_hours(lake, contracts),
        events_per_hour=stale_hourly_gold_hours(lake),
        fraud_flags=stale_fraud_hours(lake),
        sensor_anomalies=stale_anomaly_hours(lake),
        user_activity=stale_activity_hours(lake),
    )


def pending_since(
    lake: Lake, output: str, inputs: Iterable[str], stale: Collection[str]
) -> dict[str, float]:
    """Stale hour → when (epoch seconds) the oldest unrefreshed input commit touching it landed.

    Reads the input commits after the output's watermark (at most :data:`LOOKBACK_COMMITS`). A
    commit that names no hours touches every stale hour; a stale hour no read commit names (no
    watermark yet, or beyond the look-back) is dated by the oldest commit read.
    """
    if not stale:
        return {}
    wanted = set(stale)
    out = lake.open(output)
    since: dict[str, float] = {}
    for path in inputs:
        table = lake.open(path)
        if table is None:
            continue
        version = table.version()
        mark = out.transaction_version(watermark_app_id(output, path)) if out else None
        start = max(-1, version - LOOKBACK_COMMITS)
        if mark is not None:
            start = max(start, mark)
        try:
            commits = commits_after(table, start)
        except LookupError:
            continue
        stamps = [(float(info.get("timestamp") or 0) / 1000.0, info) for _, info in commits]
        exact = mark is not None and start == mark
        for stamp, info in stamps:
            hours = hours_of_commit(info)
            for hour in wanted if hours is None else hours & wanted:
                since[hour] = min(since.get(hour, stamp), stamp)
        if stamps and not exact:
            oldest = min(s for s, _ in stamps)
            for hour in wanted - since.keys():
                since[hour] = oldest
    return since


def merge_since(*maps: Mapping[str, float]) -> dict[str, float]:
    """Hour → the earliest wait start among ``maps``."""
    out: dict[str, float] = {}
    for m in maps:
        for hour, stamp in m.items():
            out[hour] = min(out.get(hour, stamp), stamp)
    return out


@dataclass(frozen=True)
class Freshness:
    """One derived asset's freshness at ``now``."""

    sla_seconds: float
    since: dict[str, float]
    """Stale hour → when its wait started (epoch seconds)."""
    now: float

    @property
    def overdue(self) -> dict[str, float]:
        """Overdue hour → seconds waited, oldest hour first."""
        return {
            h: round(self.now - s, 1)
            for h, s in sorted(self.since.items())
            if self.now - s > self.sla_seconds
        }

    @property
    def passed(self) -> bool:
        return not self.overdue

    @property
    def state(self) -> str:
        """``fresh`` or ``overdue:<hours>``: what a sensor compares between ticks."""
        return "fresh" if self.passed else "overdue:" + ",".join(self.overdue)

    def outcome(self) -> CheckOutcome:
        overdue = self.overdue
        waits = [self.now - s for s in self.since.values()]
        meta: dict[str, Any] = {
            "sla_seconds": self.sla_seconds,
            "stale_hours": len(self.since),
            "overdue_hours": len(overdue),
            "max_wait_seconds": round(max(waits), 1) if waits else 0.0,
        }
        if overdue:
            meta["overdue"] = dict(list(overdue.items())[:MAX_LISTED])
            first, waited = next(iter(overdue.items()))
            return CheckOutcome(
                False,
                f"{count(len(overdue), 'hour partition')} waited past the {self.sla_seconds:.0f}s "
                f"SLA for a refresh, oldest {first} ({waited:.0f}s)",
                meta,
            )
        if self.since:
            return CheckOutcome(
                True, f"{count(len(self.since), 'hour')} awaiting a refresh, within the SLA", meta
            )
        return CheckOutcome(True, "every hour with data is refreshed", meta)


def compute_freshness(
    lake: Lake,
    contracts: Sequence[TopicContract],
    staleness: Staleness,
    settings: RefreshSettings,
    now: float | None = None,
) -> dict[dg.AssetKey, Freshness]:
    """The freshness of every silver and gold asset (see the module docstring)."""
    now = time.time() if now is None else now
    out: dict[dg.AssetKey, Freshness] = {}
    silver_since: list[dict[str, float]] = []
    for c in contracts:
        since = pending_since(lake, c.silver_path, [c.bronze_path], staleness.silver[c.name].hours)
        silver_since.append(since)
        out[silver_key(c)] = Freshness(settings.silver_sla_seconds, since, now)
    minute = merge_since(
        pending_since(
            lake,
            EVENTS_PER_MINUTE_PATH,
            [c.silver_path for c in contracts],
            staleness.events_per_minute.hours,
        ),
        *silver_since,
    )
    out[EVENTS_PER_MINUTE_KEY] = Freshness(settings.gold_sla_seconds, minute, now)
    hour = merge_since(
        pending_since(
            lake, EVENTS_PER_HOUR_PATH, [EVENTS_PER_MINUTE_PATH], staleness.events_per_hour.hours
        ),
        minute,
    )
    out[EVENTS_PER_HOUR_KEY] = Freshness(settings.gold_sla_seconds, hour, now)
    return out


def freshness_keys(contracts: Sequence[TopicContract]) -> list[dg.AssetCheckKey]:
    assets = [*(silver_key(c) for c in contracts), EVENTS_PER_MINUTE_KEY, EVENTS_PER_HOUR_KEY]
    return [dg.AssetCheckKey(k, FRESH_WITHIN_SLA) for k in assets]


def freshness_evaluation(key: dg.AssetKey, freshness: Freshness) -> dg.AssetCheckEvaluation:
    """A runless evaluation of ``fresh_within_sla`` (what the sensor records)."""
    outcome = freshness.outcome()
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=FRESH_WITHIN_SLA,
        passed=outcome.passed,
        metadata=outcome.metadata,
        severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.description,
    )


def build_freshness_checks(
    contracts: Sequence[TopicContract], settings: RefreshSettings
) -> dg.AssetChecksDefinition:
    """``fresh_within_sla`` on every silver and gold asset, as one subsettable check function."""
    contracts = list(contracts)

    def description(key: dg.AssetKey) -> str:
        silver = key.path[0] == "silver"
        sla = settings.silver_sla_seconds if silver else settings.gold_sla_seconds
        source = "its bronze data" if silver else "bronze data for it (end to end)"
        return (
            f"No hour partition has waited longer than {sla:.0f}s for a refresh since {source} "
            "landed; hours without data never fail."
        )

    specs = [
        dg.AssetCheckSpec(FRESH_WITHIN_SLA, asset=k.asset_key, description=description(k.asset_key))
        for k in freshness_keys(contracts)
    ]

    @dg.multi_asset_check(specs=specs, can_subset=True, name=FRESHNESS_CHECKS_NAME)
    def _freshness(
        context: dg.AssetCheckExecutionContext, lake: LakeResource
    ) -> Iterable[dg.AssetCheckResult]:
        root = lake.lake()
        fresh = compute_freshness(root, contracts, read_staleness(root, contracts), settings)
        for check_key in context.selected_asset_check_keys:
            outcome = fresh[check_key.asset_key].outcome()
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=FRESH_WITHIN_SLA,
                passed=outcome.passed,
                description=outcome.description,
                metadata=outcome.metadata,
                severity=dg.AssetCheckSeverity.ERROR,
            )

    return _freshness
