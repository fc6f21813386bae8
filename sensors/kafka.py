"""Kafka micro-batch sensors: one per topic, deciding *when* an ingestion run is due.

The run itself decides *what* to read, from the Delta transaction log; the sensor only compares
bronze's committed positions with the broker (probing, since watermarks may under-report) and
requests a run whose ``run_key`` names the topic, partitions and offsets. Each tick also reports
the topic's lag as an observation of the ``kafka/<table>`` asset.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
import time
from typing import Any

import dagster as dg

from assets.bronze import bronze_key, kafka_key
from resources.ingest import IngestResource, build_engine
from resources.kafka import KafkaClient
from resources.lake import LakeResource
from tidelake.contracts import TopicContract
from tidelake.dagster_home import INGEST_TOPIC_TAG
from tidelake.ingest import IngestError, TopicLag
from tidelake.settings import ConfigError

DEFAULT_INTERVAL_SECONDS = 3
"""A tick is cheap (watermarks; a probe only where they show no lag); freshness wants it short."""
RETRY_BACKOFF_SECONDS = 30.0
"""After a failed ingestion run, wait this long before requesting the same offsets again."""
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


def _latest_run(instance: dg.DagsterInstance, contract: TopicContract) -> dg.RunRecord | None:
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={INGEST_TOPIC_TAG: contract.name}), limit=1
    )
    return records[0] if records else None


def decide(
    contract: TopicContract,
    lag: TopicLag,
    latest: dg.RunRecord | None,
    cursor: str | None,
    now: float | None = None,
) -> dg.SensorResult:
    """The tick's outcome from the lag and the topic's latest ingestion run.

    Rules: nothing pending → skip. A run of this topic queued or in progress → skip (it, or the
    next tick, picks the new records up). The latest run failed on exactly these offsets → retry
    after :data:`RETRY_BACKOFF_SECONDS` under a new key (Dagster never reuses a run key, so the
    same offsets would otherwise stall until new data arrives). Otherwise request one run. The
    lag is observed when it changed since the last tick, or while records are pending.
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
    if latest is not None and latest.dagster_run.status in IN_FLIGHT:
        return skip(
            f"{lag.physical_topic}: lag {lag.total_lag}; run {latest.dagster_run.run_id} "
            f"is {latest.dagster_run.status.value}"
        )
    key = run_key(contract, lag)
    if (
        latest is not None
        and latest.dagster_run.status == dg.DagsterRunStatus.FAILURE
        and latest.dagster_run.tags.get(RUN_KEY_TAG, "").startswith(key)
    ):
        ended = latest.end_time or 0.0
        if now - ended < RETRY_BACKOFF_SECONDS:
            return skip(
                f"{lag.physical_topic}: run {latest.dagster_run.run_id} failed on these "
                f"offsets; retrying {RETRY_BACKOFF_SECONDS:.0f}s after it ended"
            )
        key = f"{key}:retry-{latest.dagster_run.run_id[:8]}"
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
        return decide(contract, lag, _latest_run(context.instance, contract), context.cursor)

    return _sensor
