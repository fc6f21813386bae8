"""The ``lake_maintenance`` job and its hourly schedule: compaction, checkpoints, vacuum.

An op-only job (no asset is materialized: maintenance changes how tables are stored, never
what they hold). The op runs :func:`tidelake.maintenance.maintain_lake` over every existing
table, logs one line per table and attaches the figures as output metadata. A table that fails
fails the run after every other table was maintained; skipped partitions (conflicts beside the
appenders, a lease held by another maintainer) do not.

Overlap is safe, not just avoided: the schedule skips a tick while a run of the job is still in
progress, and each table's compactor holds a lease in the table's own log
(:mod:`tidelake.maintenance.lease`), which also covers ``tidelake maintain`` run by hand.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from pipeline_defs.environment import Environment, schedule_status
from resources import LakeResource
from tidelake.contracts import TOPICS
from tidelake.maintenance import MaintenanceReport, maintain_lake
from tidelake.settings import RefreshSettings

MAINTENANCE_JOB_NAME = "lake_maintenance"
MAINTENANCE_SCHEDULE_NAME = "lake_maintenance_hourly"
MAINTENANCE_SCHEDULE_CRON = "17 * * * *"
"""Minute 17 of every hour (UTC): off the top of the hour, when hourly work starts."""
MAINTENANCE_TAG = "tidelake/maintenance"

_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def run_metadata(reports: list[MaintenanceReport]) -> dict[str, Any]:
    """Run-level figures of one pass (output metadata), plus a table per table."""
    rows = [
        {
            "table": r.path,
            "compacted": len(r.partitions_compacted),
            "files": f"{r.files_before}→{r.files_after}",
            "skipped": len(r.partitions_skipped),
            "pending": r.partitions_pending,
            "vacuumed": r.vacuumed_files,
            "checkpoint": r.checkpoint_version,
            "error": r.error or "",
        }
        for r in reports
    ]
    return {
        "tables": len(reports),
        "partitions_compacted": sum(len(r.partitions_compacted) for r in reports),
        "partitions_skipped": sum(len(r.partitions_skipped) for r in reports),
        "partitions_pending": sum(r.partitions_pending for r in reports),
        "files_before": sum(r.files_before for r in reports),
        "files_after": sum(r.files_after for r in reports),
        "bytes_before": sum(r.bytes_before for r in reports),
        "bytes_after": sum(r.bytes_after for r in reports),
        "vacuumed_files": sum(r.vacuumed_files for r in reports),
        "checkpoints": sum(r.checkpoint_version is not None for r in reports),
        "conflicts_retried": sum(r.conflicts_retried for r in reports),
        "interleaved_commits": sum(r.interleaved_commits for r in reports),
        "failed_tables": [r.path for r in reports if not r.ok],
        "duration_seconds": round(sum(r.duration_seconds for r in reports), 3),
        "per_table": dg.MetadataValue.json(rows),
    }


@dg.op(
    name="maintain_lake",
    out=dg.Out(dg.Nothing),
    description="Compact closed partitions, checkpoint logs and vacuum every lake table.",
    tags={"tidelake/layer": "maintenance"},
)
def maintain_lake_op(context: dg.OpExecutionContext, lake: LakeResource) -> Iterator[dg.Output]:
    """One maintenance pass over every bronze, silver, gold and quarantine table."""
    reports = maintain_lake(
        lake.lake(), list(TOPICS.values()), RefreshSettings.from_env(), now=datetime.now(UTC)
    )
    for report in reports:
        (context.log.info if report.ok else context.log.error)(report.summary())
    metadata = run_metadata(reports)
    failed = metadata["failed_tables"]
    if failed:
        raise dg.Failure(
            description=f"maintenance failed for {', '.join(failed)}", metadata=metadata
        )
    yield dg.Output(None, metadata=metadata)


def maintenance_job_and_schedule(
    environment: Environment,
) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """The ``lake_maintenance`` job and its schedule (hourly at minute 17 UTC, running where
    the other schedules run: see :func:`pipeline_defs.environment.schedule_status`)."""

    @dg.job(
        name=MAINTENANCE_JOB_NAME,
        description=(
            "Table maintenance of the lake: compact closed hour partitions (closed days for "
            "quarantine), checkpoint the Delta logs, vacuum files removed over 7 days ago. "
            "Safe beside ingestion and refreshes; changes no rows."
        ),
        tags={"tidelake/layer": "maintenance"},
        run_tags={MAINTENANCE_TAG: "lake"},
        executor_def=dg.in_process_executor,
    )
    def lake_maintenance() -> None:
        maintain_lake_op()

    def no_run_in_progress(context: dg.ScheduleEvaluationContext) -> bool:
        runs = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=MAINTENANCE_JOB_NAME, statuses=_IN_PROGRESS), limit=1
        )
        return not runs

    schedule = dg.ScheduleDefinition(
        name=MAINTENANCE_SCHEDULE_NAME,
        cron_schedule=MAINTENANCE_SCHEDULE_CRON,
        execution_timezone="UTC",
        job=lake_maintenance,
        should_execute=no_run_in_progress,
        default_status=schedule_status(environment),
        description="Hourly at minute 17 UTC: table maintenance (job lake_maintenance).",
    )
    return lake_maintenance, schedule
