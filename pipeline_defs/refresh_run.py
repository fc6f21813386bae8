"""``tidelake refresh``: everything the sensors would do, once, headless and in-process.

Through the same definitions as the daemon (:func:`pipeline_defs.definitions.build_definitions`)
and on the instance of ``DAGSTER_HOME`` (created if missing, default ``./.tidelake/dagster``), so
every step is an ordinary run in the UI's history, with its materializations and check results:

1. **drain**: while some topic has pending records (the engine's lag probe), one in-process run of
   ``ingest_bronze`` over the pending topics' bronze assets (and their per-batch checks);
2. **derive**: while some silver/gold hour is stale (read from the Delta logs, as the
   touched-partitions sensor reads it), one ``refresh_derived`` run over the partition range of
   the stale hours (``tidelake.layers`` refreshes hours outside the partition space in any run);
3. **cohorts**: one ``refresh_cohorts`` run when ``gold/cohort_retention`` would change (new
   user activity, or a new UTC day for a recent cohort);
4. **warehouse**: one ``refresh_warehouse`` run (dbt build + tests) for the UTC days the derive
   runs touched, or a full build when the warehouse file does not exist yet.

A step fails when its run fails or a blocking (ERROR) check fails; the command then stops and
exits non-zero. A second refresh right after a successful one finds nothing pending and nothing
stale and launches no run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from assets.bronze import bronze_key
from assets.dbt import WINDOW_TAG
from assets.gold.freshness import read_staleness
from pipeline_defs.definitions import build_definitions
from pipeline_defs.jobs import ALL_TOPICS_JOB_NAME
from pipeline_defs.partitions import hourly_partitions
from pipeline_defs.refresh import COHORTS_JOB_NAME, REFRESH_JOB_NAME, WAREHOUSE_JOB_NAME
from sensors.refresh import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from sensors.refresh import partition_range as clip_range
from sensors.refresh import stale_hours as all_stale_hours
from tidelake.contracts import TOPICS, TopicContract
from tidelake.dagster_home import ensure_dagster_home
from tidelake.ingest import IngestEngine
from tidelake.lake import Lake
from tidelake.layers.cohorts import cohorts_due
from tidelake.settings import Settings

MAX_ROUNDS = 20
"""Per step: a drain that never catches up (producers outpacing it) still ends."""


@dataclass
class StepResult:
    """One step of a refresh: the runs it made and what they did."""

    name: str
    ok: bool = True
    runs: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.name, "ok": self.ok, "runs": self.runs, "detail": self.detail}


@dataclass
class RefreshSummary:
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    @property
    def runs(self) -> int:
        return sum(len(s.runs) for s in self.steps)


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    """The blocking-severity (ERROR) checks that did not pass in ``result``."""
    return [
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]


def _execute(
    defs: dg.Definitions,
    job_name: str,
    instance: dg.DagsterInstance,
    step: StepResult,
    tags: dict[str, str] | None = None,
    selection: Sequence[dg.AssetKey] | None = None,
    partition_key: str | None = None,
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(
        partition_key=partition_key,
        # Dagster's console logger prints every event at DEBUG; the run's events are in the
        # instance (the UI) anyway, the console needs only what needs attention.
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        instance=instance,
        tags={"tidelake/launched_by": "tidelake refresh", **(tags or {})},
        asset_selection=list(selection) if selection is not None else None,
        raise_on_error=False,
    )
    step.runs.append(result.run_id)
    failed = failed_checks(result)
    if not result.success or failed:
        step.ok = False
        what = "failed" if not result.success else "blocking check(s) failed: " + ", ".join(failed)
        step.detail.append(f"run {result.run_id} of {job_name} {what}")
    return result


def drain(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    contracts: Sequence[TopicContract],
    say: Callable[[str], None],
) -> StepResult:
    step = StepResult("drain")
    engine = IngestEngine.from_settings(settings)
    for _ in range(MAX_ROUNDS):
        pending = [c for c in contracts if engine.lag(c).pending]
        if not pending:
            break
        say(f"drain: {', '.join(c.name for c in pending)}")
        result = _execute(
            defs, ALL_TOPICS_JOB_NAME, instance, step, selection=[bronze_key(c) for c in pending]
        )
        if not step.ok:
            break
        records = 0
        for m in result.get_asset_materialization_events():
            value = m.materialization.metadata.get("records")
            if value is not None and isinstance(value.value, int):
                records += value.value
        step.detail.append(f"{records} records from {len(pending)} topic(s)")
    else:
        step.detail.append(f"still pending after {MAX_ROUNDS} runs; stopping here")
    return step


def derive(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    contracts: Sequence[TopicContract],
    say: Callable[[str], None],
) -> tuple[StepResult, set[str]]:
    """Refresh every stale hour; returns the step and the UTC days refreshed."""
    step = StepResult("derive")
    lake = Lake.from_settings(settings.lake)
    hourly = hourly_partitions(settings.refresh)
    days: set[str] = set()
    for _ in range(MAX_ROUNDS):
        hours = all_stale_hours(read_staleness(lake, contracts))
        bounds = clip_range(hours, hourly, datetime.now(UTC)) if hours else None
        if bounds is None:
            break
        say(f"derive: {len(hours)} stale hour(s), partitions {bounds[0]}..{bounds[1]}")
        _execute(
            defs,
            REFRESH_JOB_NAME,
            instance,
            step,
            tags={PARTITION_RANGE_START_TAG: bounds[0], PARTITION_RANGE_END_TAG: bounds[1]},
        )
        days.update(h[:10] for h in hours)
        if not step.ok:
            break
        step.detail.append(f"{len(hours)} hour(s) {min(hours)}..{max(hours)}")
    else:
        step.detail.append(f"still stale after {MAX_ROUNDS} runs; stopping here")
    return step, days


def cohorts(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    say: Callable[[str], None],
) -> StepResult | None:
    """One ``refresh_cohorts`` run when the cohorts would change (:func:`cohorts_due`)."""
    if not cohorts_due(Lake.from_settings(settings.lake)):
        return None
    step = StepResult("cohorts")
    today = datetime.now(UTC).date().isoformat()
    say("cohorts: recompute the cohorts that changed")
    _execute(defs, COHORTS_JOB_NAME, instance, step, partition_key=today)
    return step


def warehouse(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    days: set[str],
    say: Callable[[str], None],
) -> StepResult | None:
    step = StepResult("warehouse")
    exists = Path(settings.refresh.warehouse_path).expanduser().exists()
    if exists and not days:
        return None
    tags = {WINDOW_TAG: f"{min(days)}..{max(days)}"} if exists else {}
    say(f"warehouse: dbt build {'of ' + tags[WINDOW_TAG] if tags else '(full)'}")
    _execute(defs, WAREHOUSE_JOB_NAME, instance, step, tags=tags)
    return step


def refresh_everything(
    say: Callable[[str], None],
    *,
    drain_topics: bool = True,
    build_warehouse: bool = True,
    instance: dg.DagsterInstance | None = None,
) -> RefreshSummary:
    """The steps of the module docstring, in order, from the process environment.

    The environment is read as the daemon reads it (the resources resolve ``EnvVar``s when a
    run executes), so callers that configure in code must export the variables first.
    """
    settings = Settings.from_env()
    defs = build_definitions()
    contracts = list(TOPICS.values())
    own = instance is None
    if instance is None:
        home = ensure_dagster_home()
        os.environ.setdefault("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.from_config(str(home))
    summary = RefreshSummary()
    try:
        if drain_topics:
            summary.steps.append(drain(defs, instance, settings, contracts, say))
            if not summary.ok:
                return summary
        step, days = derive(defs, instance, settings, contracts, say)
        summary.steps.append(step)
        if summary.ok:
            cohort_step = cohorts(defs, instance, settings, say)
            if cohort_step is not None:
                summary.steps.append(cohort_step)
        if summary.ok and build_warehouse:
            built = warehouse(defs, instance, settings, days, say)
            if built is not None:
                summary.steps.append(built)
    finally:
        if own:
            instance.dispose()
    return summary
