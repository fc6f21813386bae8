"""Kafka sensors: deciding *when* an ingestion run is due, and observing lag.

The run itself decides *what* to read, from the Delta transaction log; a sensor only compares
bronze's committed positions with the broker (probing, since watermarks may under-report) and
requests a run whose ``run_key`` names the topics, partitions and offsets. After failed runs it
backs off exponentially (15 s, 30 s, ... up to 5 min) by the failure streak of the runs it
launches, read from one small run-records query. Each tick also reports every topic's lag as an
observation of its ``kafka/<table>`` asset.

One factory per ingestion model (``TIDELAKE_INGEST_MODEL``, wired in pipeline_defs):

* ``runs``: :func:`build_kafka_sensor`, one per topic, one run of ``ingest_<table>`` per batch;
* ``tick``: :func:`build_pending_topics_sensor`, one for all topics, one run of ``ingest_bronze``
  per tick selecting the bronze assets of every topic with pending records;
* ``worker``: :func:`build_lag_sensor`, one per topic, observing only: the ingestion worker
  (``tidelake ingest --follow``) ingests, so no sensor requests runs.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg

from assets.bronze import BRONZE_CHECK_NAMES, bronze_key, kafka_key
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
OBSERVE_INTERVAL_SECONDS = 15
"""Tick of the observe-only lag sensors (``worker`` model): lag is a dashboard figure there, not
a trigger, so a relaxed interval saves a sensor evaluation (and a broker probe) per topic every
few seconds while still showing a stalled worker within a quarter of a minute."""
PENDING_SENSOR_NAME = "kafka_pending_topics_sensor"
"""The one sensor of the ``tick`` model."""
ALL_TOPICS_TAG_VALUE = "*all*"
"""``INGEST_TOPIC_TAG`` value of runs that may cover any topic (``ingest_bronze``): the instance
allows one run per tag value, so at most one such run is in progress."""
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


def observe(
    contract: TopicContract, lag: TopicLag, previous_token: str | None
) -> list[dg.AssetObservation]:
    """The lag observation of ``kafka/<table>``, when there is something to show.

    Rule: observed while records are pending, or when the lag changed since the previous tick
    (``previous_token``, a :meth:`TopicLag.cursor_token`); an idle topic is observed once.
    """
    if lag.pending or lag.cursor_token() != previous_token:
        return [dg.AssetObservation(asset_key=kafka_key(contract), metadata=lag_metadata(lag))]
    return []


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


def _recent_runs(instance: dg.DagsterInstance, tag_value: str) -> list[dg.RunRecord]:
    """The latest runs tagged ``INGEST_TOPIC_TAG=tag_value``, newest first: one indexed query
    with a small limit."""
    return list(
        instance.get_run_records(
            filters=dg.RunsFilter(tags={INGEST_TOPIC_TAG: tag_value}),
            limit=STREAK_LOOKBACK_RUNS,
        )
    )


def hold_reason(
    runs: Sequence[dg.RunRecord],
    now: float | None = None,
    backoff_base_seconds: float = RETRY_BACKOFF_BASE_SECONDS,
    backoff_cap_seconds: float = RETRY_BACKOFF_CAP_SECONDS,
) -> str | None:
    """Why no run may be requested now for a stream with pending records, or None if one may.

    Rules, over the stream's latest runs (newest first): the latest run queued or in progress →
    hold (it, or the next tick, picks the new records up). The stream is in a failure streak of
    ``n`` runs (whatever offsets they failed on; see :func:`sensors.runs.failure_streak`) → hold
    until :func:`retry_delay` after the latest failure ended.
    """
    now = time.time() if now is None else now
    latest = runs[0] if runs else None
    if latest is not None and latest.dagster_run.status in IN_FLIGHT:
        return f"run {latest.dagster_run.run_id} is {latest.dagster_run.status.value}"
    streak = failure_streak(runs, more=len(runs) >= STREAK_LOOKBACK_RUNS)
    if streak.runs:
        newest = streak.runs[0]
        wait = retry_delay(streak.length, backoff_base_seconds, backoff_cap_seconds)
        remaining = ended_at(newest) + wait - now
        if remaining > 0:
            return (
                f"{streak.label} failed run(s) in a row, latest {newest.dagster_run.run_id}; "
                f"retrying in {remaining:.0f}s (backoff {wait:.0f}s after it ended)"
            )
    return None


def with_retry_suffix(key: str, runs: Sequence[dg.RunRecord]) -> str:
    """``key``, suffixed ``:retry-<run id>`` when the stream's latest run was not a success.

    Why: Dagster never reuses a run key, so the same offsets need a new one after a failed (or
    cancelled) run; naming that run keeps the key the same on every tick until it is superseded.
    """
    latest = runs[0] if runs else None
    if latest is not None and latest.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        return f"{key}:retry-{latest.dagster_run.run_id}"
    return key


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

    Rules: nothing pending → skip. A run in flight or a failure backoff → skip
    (:func:`hold_reason`). Otherwise request one run; its key is :func:`run_key`, with
    :func:`with_retry_suffix`. The lag is observed by :func:`observe`.
    """
    token = lag.cursor_token()
    events = observe(contract, lag, cursor)

    def skip(reason: str) -> dg.SensorResult:
        return dg.SensorResult(skip_reason=reason, cursor=token, asset_events=events)

    if not lag.pending:
        return skip(f"{lag.physical_topic}: nothing pending ({token})")
    held = hold_reason(runs, now, backoff_base_seconds, backoff_cap_seconds)
    if held is not None:
        return skip(f"{lag.physical_topic}: lag {lag.total_lag}; {held}")
    key = with_retry_suffix(run_key(contract, lag), runs)
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
            _recent_runs(context.instance, contract.name),
            context.cursor,
            backoff_base_seconds=backoff_base_seconds,
            backoff_cap_seconds=backoff_cap_seconds,
        )

    return _sensor


# -- the tick model: one sensor, one run per tick for every pending topic ---------------------


def encode_tokens(tokens: Mapping[str, str]) -> str:
    """The all-topics cursor: each logical topic's :meth:`TopicLag.cursor_token`, as JSON."""
    return json.dumps(dict(sorted(tokens.items())), separators=(",", ":"))


def decode_tokens(cursor: str | None) -> dict[str, str]:
    """The per-topic tokens of an all-topics cursor; an empty or unreadable one holds none."""
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def pending_run_key(pending: Sequence[tuple[TopicContract, TopicLag]]) -> str:
    """``;``-joined :func:`run_key` of every selected topic, by topic name."""
    return ";".join(run_key(c, lag) for c, lag in sorted(pending, key=lambda p: p[0].name))


def decide_pending(
    lags: Sequence[tuple[TopicContract, TopicLag]],
    runs: Sequence[dg.RunRecord],
    cursor: str | None,
    now: float | None = None,
    backoff_base_seconds: float = RETRY_BACKOFF_BASE_SECONDS,
    backoff_cap_seconds: float = RETRY_BACKOFF_CAP_SECONDS,
    unavailable: Mapping[str, str] | None = None,
) -> dg.SensorResult:
    """The all-topics tick's outcome from every topic's lag and the latest all-topics runs.

    Rules: no topic pending → skip. A run in flight or a failure backoff of the all-topics
    stream (runs tagged :data:`ALL_TOPICS_TAG_VALUE`, newest first) → skip, by the same
    :func:`hold_reason` as the per-topic sensors. Otherwise request ONE run selecting the bronze
    assets of exactly the pending topics and their per-batch checks, keyed by
    :func:`pending_run_key` with
    :func:`with_retry_suffix`. Every topic's lag is observed by :func:`observe`. Topics in
    ``unavailable`` (name → why: topic missing, broker refused) are left out of the run and keep
    their previous cursor token.

    One failing topic fails the run, so it holds every topic for the backoff: the price of one
    stream of runs for all topics.
    """
    previous = decode_tokens(cursor)
    tokens = {name: token for name, token in previous.items() if name in (unavailable or {})}
    events: list[dg.AssetObservation] = []
    for contract, lag in lags:
        tokens[contract.name] = lag.cursor_token()
        events.extend(observe(contract, lag, previous.get(contract.name)))
    new_cursor = encode_tokens(tokens)
    pending = [(c, lag) for c, lag in lags if lag.pending]
    missing = "".join(f"; {name}: {why}" for name, why in sorted((unavailable or {}).items()))

    def skip(reason: str) -> dg.SensorResult:
        return dg.SensorResult(skip_reason=reason + missing, cursor=new_cursor, asset_events=events)

    if not pending:
        return skip(f"nothing pending in {len(lags)} topic(s)")
    summary = ", ".join(f"{c.name} lag {lag.total_lag}" for c, lag in pending)
    held = hold_reason(runs, now, backoff_base_seconds, backoff_cap_seconds)
    if held is not None:
        return skip(f"{summary}; {held}")
    selected = sorted((c for c, _ in pending), key=lambda c: c.name)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=with_retry_suffix(pending_run_key(pending), runs),
                asset_selection=[bronze_key(c) for c in selected],
                # Named, because a run selecting assets without naming checks runs every check
                # on them, the O(history) audit included (measured: Dagster 1.13).
                asset_check_keys=[
                    dg.AssetCheckKey(bronze_key(c), name)
                    for c in selected
                    for name in BRONZE_CHECK_NAMES
                ],
                tags={INGEST_TOPIC_TAG: ALL_TOPICS_TAG_VALUE},
            )
        ],
        cursor=new_cursor,
        asset_events=events,
    )


def topic_lags(
    contracts: Sequence[TopicContract],
    kafka: KafkaClient,
    lake: LakeResource,
    ingest: IngestResource,
) -> tuple[list[tuple[TopicContract, TopicLag]], dict[str, str]]:
    """Every topic's lag, read in parallel; topics whose lag cannot be read, with the reason.

    Why parallel: an idle topic's probe waits up to a second for a record that may not come;
    six of them in turn would be most of a 3 s tick.
    """

    def one(contract: TopicContract) -> TopicLag | str:
        try:
            # One engine per thread: an engine holds a consumer factory and a fault hook.
            return build_engine(kafka, lake, ingest).lag(contract)
        except (ConfigError, IngestError) as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=max(1, len(contracts)), thread_name_prefix="lag") as pool:
        results = list(pool.map(one, contracts))
    lags = [(c, r) for c, r in zip(contracts, results, strict=True) if isinstance(r, TopicLag)]
    errors = {c.name: r for c, r in zip(contracts, results, strict=True) if isinstance(r, str)}
    return lags, errors


def build_pending_topics_sensor(
    contracts: Sequence[TopicContract],
    job_name: str,
    default_status: dg.DefaultSensorStatus,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    backoff_base_seconds: float = RETRY_BACKOFF_BASE_SECONDS,
    backoff_cap_seconds: float = RETRY_BACKOFF_CAP_SECONDS,
) -> dg.SensorDefinition:
    """The ``tick`` model's one sensor: per tick, one run of ``job_name`` (which must hold every
    topic's bronze asset and carry the :data:`ALL_TOPICS_TAG_VALUE` tag) for the pending topics."""
    contracts = list(contracts)

    @dg.sensor(
        name=PENDING_SENSOR_NAME,
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Requests one ingestion run per tick covering every topic with records past bronze "
            "(TIDELAKE_INGEST_MODEL=tick)."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        kafka: dg.ResourceParam[KafkaClient],
        lake: LakeResource,
        ingest: IngestResource,
    ) -> dg.SensorResult:
        lags, errors = topic_lags(contracts, kafka, lake, ingest)
        if not lags:
            # Not configured / no topic exists yet: the messages say the fix.
            reasons = "; ".join(f"{name}: {why}" for name, why in sorted(errors.items()))
            return dg.SensorResult(skip_reason=reasons, cursor=context.cursor)
        return decide_pending(
            lags,
            _recent_runs(context.instance, ALL_TOPICS_TAG_VALUE),
            context.cursor,
            backoff_base_seconds=backoff_base_seconds,
            backoff_cap_seconds=backoff_cap_seconds,
            unavailable=errors,
        )

    return _sensor


# -- the worker model: the sensors only observe -----------------------------------------------


def observe_only(contract: TopicContract, lag: TopicLag, cursor: str | None) -> dg.SensorResult:
    """An observe-only tick: the lag observation (by :func:`observe`), never a run request."""
    token = lag.cursor_token()
    return dg.SensorResult(
        skip_reason=(
            f"{lag.physical_topic}: lag {lag.total_lag}; the ingestion worker ingests this topic"
        ),
        cursor=token,
        asset_events=observe(contract, lag, cursor),
    )


def build_lag_sensor(
    contract: TopicContract,
    default_status: dg.DefaultSensorStatus,
    minimum_interval_seconds: int = OBSERVE_INTERVAL_SECONDS,
) -> dg.SensorDefinition:
    """The ``worker`` model's sensor of one topic: observes its lag, targets no job."""

    @dg.sensor(
        name=sensor_name(contract),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"Observes the lag of `{contract.name}`; the ingestion worker "
            "(`tidelake ingest --follow`) ingests it, this sensor requests no runs."
        ),
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
            return dg.SensorResult(skip_reason=str(exc), cursor=context.cursor)
        return observe_only(contract, lag, context.cursor)

    return _sensor
