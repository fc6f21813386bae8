"""Kafka micro-batch sensors: one per topic, deciding *when* an ingestion run is due.

The run itself decides *what* to read, from the Delta transaction log; the sensor only compares
bronze's committed positions with the broker (probing, since watermarks may under-report) and
requests a run whose ``run_key`` names the topic, partitions and offsets. After failed runs it
backs off exponentially (15 s, 30 s, ... up to 5 min) by the topic's failure streak, read from one
small run-records query. Each tick also reports the topic's lag as an observation of the
``kafka/<table>`` asset.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
import time
from collections.abc import Sequence
from typing import Any

import dagster as dg

from assets.bronze import bronze_key, kafka_key
from resources.ingest import IngestResource, build_engine
from resources.kafka import KafkaClient
from resources.lake import LakeResource
from sensors.runs import STREAK_LOOKBACK_RUNS, ended_at, failure_streak
from tidelake.contracts import TopicContract
from tidelake.dagster_home import INGEST_TOPIC_TAG
from tidelake.ingest import IngestError, TopicLag
from tidelake.settings import ConfigError

DEFAULT_INTERVAL_SECONDS = 3
"""A tick is cheap (watermarks; a probe only where they show no lag); freshness wants it short."""
RETRY_BACKOFF_BASE_SECONDS = 15.0
"""Wait after the first failed run of a streak; each further failure doubles it."""
RETRY_BACKOFF_CAP_SECONDS = 300.0
"""The longest wait between retries, however long the streak: a broken topic is retried every
5 minutes, so it recovers on its own within that once the cause is fixed."""
RUN_KEY_TAG = "dagster/run_key"

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def sensor_name(contract: TopicContract) -> str:
    return f"kafka_{contract.table_name}_sensor"


def lag_metadata(lag: TopicLag) -> dict[str, Any]:
    """Observation metadata: total lag, per-partition detail, age of the oldest pending record."""
    age = lag.oldest_pending_age_seconds
    return {
        "lag": lag.total_lag,
        "pending": lag.pending,
        "per-partition": {
            str(p.partition): {
                "position": p.position,
                "high_watermark": p.high_watermark,
                "lag": p.lag,
                "pending_probe": p.pending_probe,
            }
            for p in lag.partitions
        },
        "oldest_pending_age_seconds": round(age, 3) if age is not None else None,
        "physical_topic": lag.physical_topic,
    }


def run_key(contract: TopicContract, lag: TopicLag) -> str:
    """``<topic>:<partition>:<position>-<watermark>,...``: names what the run would pick up."""
    return f"{contract.name}:{lag.cursor_token()}"


def retry_delay(
    failures: int,
    base_seconds: float = RETRY_BACKOFF_BASE_SECONDS,
    cap_seconds: float = RETRY_BACKOFF_CAP_SECONDS,
) -> float:
    """Seconds to wait after the latest of ``failures`` consecutive failed runs: exponential.

    Rule: ``min(base * 2**(failures - 1), cap)``; no wait without a failure.
    """
    if failures < 1:
        return 0.0
    # Past 2**30 the cap has long won; bounding the exponent keeps the float finite.
    return min(base_seconds * 2.0 ** min(failures - 1, 30), cap_seconds)


def _recent_runs(instance: dg.DagsterInstance, contract: TopicContract) -> list[dg.RunRecord]:
    """The topic's latest runs, newest first: one indexed query with a small limit."""
    return list(
        instance.get_run_records(
            filters=dg.RunsFilter(tags={INGEST_TOPIC_TAG: contract.name}),
            limit=STREAK_LOOKBACK_RUNS,
        )
    )


def decide(
    contract: TopicContract,
    lag: TopicLag,
    runs: Sequence[dg.RunRecord],
    cursor: str | None,
    now: float | None = None,
    backoff_base_seconds: float = RETRY_BACKOFF_BASE_SECONDS,
    backoff_cap_seconds: float = RETRY_BACKOFF_CAP_SECONDS,
) -> dg.SensorResult:
    """The tick's outcome from the lag and the topic's latest ingestion runs (newest first).

    Rules: nothing pending → skip. The latest run queued or in progress → skip (it, or the next
    tick, picks the new records up). The topic is in a failure streak of ``n`` runs (whatever
    offsets they failed on; see :func:`sensors.runs.failure_streak`) → skip until
    :func:`retry_delay` after the latest failure ended. Otherwise request one run. Its key is
    :func:`run_key`, suffixed ``:retry-<run id>`` when the latest finished run was not a success:
    Dagster never reuses a run key, so the same offsets need a new one, and naming the run that
    failed (or was cancelled) keeps it the same on every tick until that run is superseded. The lag
    is observed when it changed since the last tick, or while records are pending.
    """
    now = time.time() if now is None else now
    token = lag.cursor_token()
    events: list[dg.AssetObservation] = []
    if lag.pending or token != cursor:
        events.append(
            dg.AssetObservation(asset_key=kafka_key(contract), metadata=lag_metadata(lag))
        )

    def skip(reason: str) -> dg.SensorResult:
        return dg.SensorResult(skip_reason=reason, cursor=token, asset_events=events)

    if not lag.pending:
        return skip(f"{lag.physical_topic}: nothing pending ({token})")
    latest = runs[0] if runs else None
    if latest is not None and latest.dagster_run.status in IN_FLIGHT:
        return skip(
            f"{lag.physical_topic}: lag {lag.total_lag}; run {latest.dagster_run.run_id} "
            f"is {latest.dagster_run.status.value}"
        )
    streak = failure_streak(runs, more=len(runs) >= STREAK_LOOKBACK_RUNS)
    if streak.runs:
        newest = streak.runs[0]
        wait = retry_delay(streak.length, backoff_base_seconds, backoff_cap_seconds)
        remaining = ended_at(newest) + wait - now
        if remaining > 0:
            return skip(
                f"{lag.physical_topic}: lag {lag.total_lag}; {streak.label} failed run(s) in a "
                f"row, latest {newest.dagster_run.run_id}; retrying in {remaining:.0f}s "
                f"(backoff {wait:.0f}s after it ended)"
            )
    key = run_key(contract, lag)
    if latest is not None and latest.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        key = f"{key}:retry-{latest.dagster_run.run_id}"
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=key,
                asset_selection=[bronze_key(contract)],
                tags={INGEST_TOPIC_TAG: contract.name},
            )
        ],
        cursor=token,
        asset_events=events,
    )


def build_kafka_sensor(
    contract: TopicContract,
    job_name: str,
    default_status: dg.DefaultSensorStatus,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    backoff_base_seconds: float = RETRY_BACKOFF_BASE_SECONDS,
    backoff_cap_seconds: float = RETRY_BACKOFF_CAP_SECONDS,
) -> dg.SensorDefinition:
    """The sensor of one topic; it launches ``job_name``, which must hold its bronze asset."""

    @dg.sensor(
        name=sensor_name(contract),
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Requests an ingestion run when `{contract.name}` has records past bronze.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        kafka: dg.ResourceParam[KafkaClient],
        lake: LakeResource,
        ingest: IngestResource,
    ) -> dg.SensorResult:
        try:
            lag = build_engine(kafka, lake, ingest).lag(contract)
        except (ConfigError, IngestError) as exc:
            # Not configured / topic missing: the message says the fix; nothing to ingest yet.
            return dg.SensorResult(skip_reason=str(exc), cursor=context.cursor)
        return decide(
            contract,
            lag,
            _recent_runs(context.instance, contract),
            context.cursor,
            backoff_base_seconds=backoff_base_seconds,
            backoff_cap_seconds=backoff_cap_seconds,
        )

    return _sensor
