"""The touched-partitions sensor: one ``refresh_derived`` run covering every stale hour.

Each tick reads, from the Delta logs only, which hours of each silver and gold table are stale
(:func:`assets.gold.read_staleness`). If any are, it requests ONE run of the refresh job
selecting the silver assets of the topics with stale hours plus the gold assets and what is
built on them (the dbt marts, which rebuild the days of the range), over the
partition range from the oldest to the newest stale hour, clipped to the partition space (hours
outside it are refreshed by every refresh anyway, so if only those are stale, the nearest
partition is requested). The run key is a digest of the input versions: the same versions never
launch twice, and a run that finds nothing stale any more (another run got there first) is a
no-op. Runs of the stream (tag ``tidelake/refresh=derived``) are held while one is queued or in
progress and back off after failures by the Kafka sensors' rule (:func:`sensors.kafka.hold_reason`).

The cursor (JSON) records the input versions last requested and each asset's freshness state;
every change of the latter is recorded as a runless ``fresh_within_sla`` evaluation.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from assets.gold import (
    EVENTS_MATCH_SILVER,
    EVENTS_PER_MINUTE_KEY,
    GOLD_KEYS,
    Staleness,
    compute_freshness,
    freshness_evaluation,
    read_staleness,
)
from assets.silver import SILVER_CHECK_NAMES, silver_key
from resources.lake import LakeResource
from sensors.kafka import hold_reason, with_retry_suffix
from sensors.runs import STREAK_LOOKBACK_RUNS
from tidelake.contracts import TopicContract
from tidelake.layers.hours import in_partition_space
from tidelake.settings import ConfigError, RefreshSettings

REFRESH_SENSOR_NAME = "touched_partitions_sensor"
REFRESH_TAG = "tidelake/refresh"
REFRESH_TAG_VALUE = "derived"
REFRESH_INTERVAL_SECONDS = 5
"""A tick reads a few commit entries per table; freshness wants it short."""
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
"""Dagster's partition range run tags (``dagster._core.storage.tags``, private there)."""
RUN_KEY_TAG = "dagster/run_key"
WORKER_GRACE_SECONDS = 60.0
"""With the ingestion worker refreshing (``TIDELAKE_WORKER_REFRESH``), the sensor requests a run
only for input data that has waited this long: the worker refreshes within seconds, so a run is
requested only when it is down, blocked or behind (a backfill of old hours), never racing it."""


def encode_cursor(versions: Mapping[str, int], freshness: Mapping[str, str]) -> str:
    """The cursor: the input versions last requested and each asset's freshness state."""
    return json.dumps(
        {"requested": dict(sorted(versions.items())), "freshness": dict(sorted(freshness.items()))},
        separators=(",", ":"),
    )


def decode_cursor(cursor: str | None) -> tuple[dict[str, int], dict[str, str]]:
    """``(requested versions, freshness states)``; an empty or unreadable cursor holds none."""
    try:
        value = json.loads(cursor or "{}")
    except ValueError:
        return {}, {}
    if not isinstance(value, dict):
        return {}, {}
    requested = value.get("requested") or {}
    freshness = value.get("freshness") or {}
    return (
        {str(k): int(v) for k, v in requested.items()} if isinstance(requested, dict) else {},
        {str(k): str(v) for k, v in freshness.items()} if isinstance(freshness, dict) else {},
    )


def input_versions(staleness: Staleness) -> dict[str, int]:
    """Every input table's version the tick saw (bronze, silver and per-minute gold)."""
    versions: dict[str, int] = {}
    for stale in staleness.tables:
        versions.update(stale.input_versions)
    return dict(sorted(versions.items()))


def refresh_run_key(versions: Mapping[str, int]) -> str:
    """``refresh:<sha256 of the input versions, 16 hex>``: the same inputs, the same key."""
    text = json.dumps(dict(sorted(versions.items())), separators=(",", ":"))
    return "refresh:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def stale_hours(staleness: Staleness) -> list[str]:
    """Every stale hour of any derived table, sorted."""
    return sorted({h for s in staleness.tables for h in s.hours})


def partition_bounds(
    partitions_def: dg.TimeWindowPartitionsDefinition, now: datetime
) -> tuple[str, str] | None:
    """The first and last partition keys at ``now`` (None: no partition yet)."""
    with dg.partition_loading_context(effective_dt=now):
        first = partitions_def.get_first_partition_key()
        last = partitions_def.get_last_partition_key()
    return None if first is None or last is None else (first, last)


def requestable_hours(
    hours: Sequence[str], partitions_start: str, last: str, now: datetime
) -> list[str]:
    """``hours`` minus those no run can refresh yet: past the last partition, yet inside the
    refresh functions' partition space (:func:`tidelake.layers.hours.in_partition_space`).
    The two spaces end at the same open hour, so this drops nothing unless they drift apart
    (e.g. the sensor's clock ahead of the run's); hours outside the space are refreshed by any
    run."""
    return [h for h in hours if h <= last or not in_partition_space(h, partitions_start, now)]


def partition_range(
    hours: Sequence[str], partitions_def: dg.TimeWindowPartitionsDefinition, now: datetime
) -> tuple[str, str] | None:
    """The partition range from the oldest to the newest of ``hours``, clipped to the partition
    space at ``now`` (an hour before it maps to the first partition, after it to the last);
    None when the space is empty."""
    bounds = partition_bounds(partitions_def, now)
    if bounds is None or not hours:
        return None
    first, last = bounds

    def clip(key: str) -> str:
        return min(max(key, first), last)

    return clip(min(hours)), clip(max(hours))


def ran_for(record: dg.RunRecord | None, key: str) -> bool:
    """Whether ``record`` is a run launched by a request keyed ``key`` (or a retry of it)."""
    if record is None:
        return False
    return record.dagster_run.tags.get(RUN_KEY_TAG, "").startswith(key)


def decide_refresh(
    contracts: Sequence[TopicContract],
    staleness: Staleness,
    runs: Sequence[dg.RunRecord],
    cursor: str | None,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    now: datetime,
    partitions_start: str,
    freshness_events: Sequence[dg.AssetCheckEvaluation] = (),
    freshness_states: Mapping[str, str] | None = None,
    downstream: Sequence[dg.AssetKey] = (),
    downstream_checks: Sequence[dg.AssetCheckKey] = (),
    grace_seconds: float = 0.0,
    waited_seconds: float = float("inf"),
) -> dg.SensorResult:
    """The tick's outcome from what is stale and the refresh stream's latest runs (newest first).

    Rules: nothing stale, or only the hour after the open one (:func:`requestable_hours`) → skip.
    The oldest stale input data has waited less than ``grace_seconds`` (``waited_seconds``; the
    worker refreshes it) → skip. A refresh run queued or in progress, or a failure backoff → skip
    (:func:`sensors.kafka.hold_reason`). The same input versions as the last request and the
    stream's latest run is not one for them → skip: that request is still to be launched (Dagster
    would drop the repeated key anyway). Otherwise one run request as the module docstring says,
    keyed by :func:`refresh_run_key`, with :func:`sensors.kafka.with_retry_suffix` after a failed or
    cancelled run, or ``:again-<run id>`` when the run for these very versions succeeded yet left
    hours stale.
    """
    requested, _ = decode_cursor(cursor)
    versions = input_versions(staleness)
    states = dict(freshness_states or {})
    events = list(freshness_events)
    hours = stale_hours(staleness)

    def skip(reason: str, recorded: Mapping[str, int]) -> dg.SensorResult:
        return dg.SensorResult(
            skip_reason=reason, cursor=encode_cursor(recorded, states), asset_events=events
        )

    if not hours:
        return skip("nothing stale in silver or gold", requested)
    summary = f"{len(hours)} stale hour(s), {hours[0]}..{hours[-1]}"
    bounds = partition_bounds(partitions_def, now)
    if bounds is None:
        return skip(f"{summary}; the partition space is empty", requested)
    hours = requestable_hours(hours, partitions_start, bounds[1], now)
    if not hours:
        return skip(f"{summary}; waiting for the next hour to become a partition", requested)
    if waited_seconds < grace_seconds:
        return skip(
            f"{summary}; the ingestion worker refreshes them (oldest data waiting "
            f"{waited_seconds:.0f}s of the {grace_seconds:.0f}s grace)",
            requested,
        )
    held = hold_reason(runs, now.timestamp())
    if held is not None:
        return skip(f"{summary}; {held}", requested)
    base = refresh_run_key(versions)
    latest = runs[0] if runs else None
    key = with_retry_suffix(base, runs)
    if versions == requested and not ran_for(latest, base):
        return skip(f"{summary}; already requested for these input versions", requested)
    if latest is not None and ran_for(latest, base) and key == base:
        # The run for these very versions succeeded and left hours stale (a refresh narrowed to
        # the range found more): ask again under a key of its own, or Dagster drops it.
        key = f"{base}:again-{latest.dagster_run.run_id}"
    span = partition_range(hours, partitions_def, now)
    assert span is not None  # bounds exist and hours is not empty
    stale_topics = sorted(
        (c for c in contracts if staleness.silver[c.name].hours), key=lambda c: c.name
    )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=key,
                asset_selection=[*(silver_key(c) for c in stale_topics), *GOLD_KEYS, *downstream],
                asset_check_keys=run_checks(stale_topics, downstream_checks),
                tags={
                    REFRESH_TAG: REFRESH_TAG_VALUE,
                    PARTITION_RANGE_START_TAG: span[0],
                    PARTITION_RANGE_END_TAG: span[1],
                },
            )
        ],
        cursor=encode_cursor(versions, states),
        asset_events=events,
    )


def run_checks(
    topics: Sequence[TopicContract], downstream_checks: Sequence[dg.AssetCheckKey]
) -> list[dg.AssetCheckKey]:
    """The checks a refresh run evaluates: the selected silver assets', gold's and the
    downstream ones (dbt tests), not ``fresh_within_sla``.

    Named, because a run that selects assets without naming checks runs every check on them
    (Dagster 1.13), and the freshness check in a partitioned run costs seconds (see
    :func:`pipeline_defs.refresh.derived_selection`); the sensor records freshness itself.
    """
    return [
        *(dg.AssetCheckKey(silver_key(c), name) for c in topics for name in SILVER_CHECK_NAMES),
        dg.AssetCheckKey(EVENTS_PER_MINUTE_KEY, EVENTS_MATCH_SILVER),
        *downstream_checks,
    ]


def freshness_changes(
    fresh: Mapping[dg.AssetKey, Any], previous: Mapping[str, str]
) -> tuple[list[dg.AssetCheckEvaluation], dict[str, str]]:
    """Evaluations of the assets whose freshness state changed since ``previous``, and the new
    states (asset key string → :attr:`Freshness.state`)."""
    events: list[dg.AssetCheckEvaluation] = []
    states: dict[str, str] = {}
    for key, freshness in fresh.items():
        name = key.to_user_string()
        states[name] = freshness.state
        if previous.get(name) != freshness.state:
            events.append(freshness_evaluation(key, freshness))
    return events, states


def recent_refresh_runs(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    """The latest runs of the refresh stream, newest first (one indexed query, small limit)."""
    return list(
        instance.get_run_records(
            filters=dg.RunsFilter(tags={REFRESH_TAG: REFRESH_TAG_VALUE}),
            limit=STREAK_LOOKBACK_RUNS,
        )
    )


def build_refresh_sensor(
    contracts: Sequence[TopicContract],
    job_name: str,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settings: RefreshSettings,
    default_status: dg.DefaultSensorStatus,
    downstream: Sequence[dg.AssetKey] = (),
    downstream_checks: Sequence[dg.AssetCheckKey] = (),
    minimum_interval_seconds: int = REFRESH_INTERVAL_SECONDS,
    grace_seconds: float = 0.0,
) -> dg.SensorDefinition:
    """``touched_partitions_sensor``; ``job_name`` must hold every silver and gold asset and
    ``downstream`` (assets built after gold in every refresh run: the dbt marts) with their
    ``downstream_checks`` (the dbt tests). ``grace_seconds``: see :data:`WORKER_GRACE_SECONDS`."""
    contracts = list(contracts)
    downstream = list(downstream)
    downstream_checks = list(downstream_checks)

    @dg.sensor(
        name=REFRESH_SENSOR_NAME,
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Requests one refresh_derived run covering every stale hour of silver and gold "
            "(from the Delta logs), one run at a time; records fresh_within_sla changes."
            + (
                " While the ingestion worker refreshes, only for data waiting > "
                f"{grace_seconds:.0f}s."
                if grace_seconds
                else ""
            )
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
        try:
            root = lake.lake()
        except ConfigError as exc:
            # An unusable LAKE_URI: the message says the fix; nothing to refresh until then.
            return dg.SensorResult(skip_reason=str(exc), cursor=context.cursor)
        staleness = read_staleness(root, contracts)
        now = datetime.now(UTC)
        _, previous = decode_cursor(context.cursor)
        fresh = compute_freshness(root, contracts, staleness, settings, now.timestamp())
        events, states = freshness_changes(fresh, previous)
        waits = [now.timestamp() - s for f in fresh.values() for s in f.since.values()]
        return decide_refresh(
            contracts,
            staleness,
            recent_refresh_runs(context.instance),
            context.cursor,
            partitions_def,
            now,
            settings.partitions_start,
            events,
            states,
            downstream,
            downstream_checks,
            grace_seconds,
            max(waits, default=0.0),
        )

    return _sensor


__all__ = [
    "PARTITION_RANGE_END_TAG",
    "PARTITION_RANGE_START_TAG",
    "REFRESH_INTERVAL_SECONDS",
    "REFRESH_SENSOR_NAME",
    "REFRESH_TAG",
    "REFRESH_TAG_VALUE",
    "WORKER_GRACE_SECONDS",
    "build_refresh_sensor",
    "decide_refresh",
    "decode_cursor",
    "encode_cursor",
    "freshness_changes",
    "partition_range",
    "refresh_run_key",
    "stale_hours",
]
