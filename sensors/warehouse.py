"""``warehouse_sensor``: rebuilds the dbt marts after their silver/gold inputs changed.

The marts are not in the ``refresh_derived`` runs: a dbt build costs ~10 s (dbt's start-up and
parse), which would add to every silver/gold refresh and so to gold's freshness. Instead this
sensor, at most once a minute, compares the inputs' Delta versions with those of its last
request; when some changed, it requests one ``refresh_warehouse`` run for the UTC days those
commits touched (read from their annotations: :func:`tidelake.layers.lineage.hours_of_commit`),
or a full build when a commit does not say which hours it changed or no build is known yet.
One run at a time; a failing stream backs off like the Kafka sensors.

The baseline is the input versions of the newest *successful* run (its ``tidelake/warehouse_inputs``
tag), not of the last request: after a failed or cancelled build, the days it should have built
are requested again (after the backoff), together with what changed since.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from assets.dbt import WINDOW_TAG
from resources.lake import LakeResource
from sensors.kafka import hold_reason, with_retry_suffix
from sensors.runs import STREAK_LOOKBACK_RUNS
from tidelake.deltalog import commits_after
from tidelake.lake import Lake
from tidelake.layers.lineage import hours_of_commit
from tidelake.settings import ConfigError

WAREHOUSE_SENSOR_NAME = "warehouse_sensor"
WAREHOUSE_TAG = "tidelake/refresh"
WAREHOUSE_TAG_VALUE = "warehouse"
WAREHOUSE_INTERVAL_SECONDS = 60
VERSIONS_TAG = "tidelake/warehouse_inputs"
"""On each ``refresh_warehouse`` run: the input versions (JSON) it was requested for."""


@dataclass(frozen=True)
class InputChanges:
    """What changed in the warehouse's inputs since the versions of the last request."""

    versions: dict[str, int]
    """Current version of every input table that exists."""
    days: set[str]
    """UTC days (``YYYY-MM-DD``) the new commits touched."""
    full: bool
    """A change whose hours are unknown (or no previous versions): rebuild everything."""

    @property
    def changed(self) -> bool:
        return self.full or bool(self.days)


def read_changes(lake: Lake, inputs: Sequence[str], previous: Mapping[str, int]) -> InputChanges:
    """Rule: per input, the commits after ``previous[path]`` name the hours they changed; an
    input not in ``previous`` (first tick, or a table that appeared) is a full build; commits
    that change nothing (maintenance, empty writes) name no hours."""
    versions: dict[str, int] = {}
    days: set[str] = set()
    full = False
    for path in inputs:
        table = lake.open(path)
        if table is None:
            continue
        version = table.version()
        versions[path] = version
        since = previous.get(path)
        if since is None:
            full = True
            continue
        try:
            commits = commits_after(table, since)
        except LookupError:
            full = True
            continue
        for _, info in commits:
            hours = hours_of_commit(info)
            if hours is None:
                full = True
            else:
                days.update(h[:10] for h in hours)
    return InputChanges(versions, days, full)


def decode_cursor(cursor: str | None) -> dict[str, int]:
    if not cursor:
        return {}
    try:
        raw = json.loads(cursor)
        return {str(k): int(v) for k, v in raw.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def baseline(runs: Sequence[dg.RunRecord], cursor: str | None) -> dict[str, int]:
    """The input versions of the newest successful run among ``runs`` (newest first); the
    cursor when none is in the look-back (a long failure streak, or runs from before the tag)."""
    for record in runs:
        if record.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            tagged = decode_cursor(record.dagster_run.tags.get(VERSIONS_TAG))
            if tagged:
                return tagged
    return decode_cursor(cursor)


def decide_warehouse(
    changes: InputChanges, runs: Sequence[dg.RunRecord], cursor: str | None
) -> dg.SensorResult:
    """One ``refresh_warehouse`` request for the changed days, or a skip (see module docstring).

    The cursor advances only with a request, so changes seen while a run is in flight or the
    stream backs off are requested later, together with what arrives meanwhile.
    """
    if not changes.changed:
        return dg.SensorResult(skip_reason="no silver/gold change since the last build")
    held = hold_reason(runs)
    if held:
        return dg.SensorResult(skip_reason=f"holding: {held}", cursor=cursor)
    encoded = json.dumps(changes.versions, sort_keys=True)
    tags: dict[str, str] = {WAREHOUSE_TAG: WAREHOUSE_TAG_VALUE, VERSIONS_TAG: encoded}
    if not changes.full:
        tags[WINDOW_TAG] = f"{min(changes.days)}..{max(changes.days)}"
    digest = hashlib.sha256(json.dumps(changes.versions, sort_keys=True).encode()).hexdigest()[:16]
    key = with_retry_suffix(f"warehouse:{digest}", runs)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=key, tags=tags)],
        cursor=encoded,
    )


def recent_warehouse_runs(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    return list(
        instance.get_run_records(
            filters=dg.RunsFilter(tags={WAREHOUSE_TAG: WAREHOUSE_TAG_VALUE}),
            limit=STREAK_LOOKBACK_RUNS,
        )
    )


def build_warehouse_sensor(
    job_name: str,
    inputs: Sequence[str],
    default_status: dg.DefaultSensorStatus,
    minimum_interval_seconds: int = WAREHOUSE_INTERVAL_SECONDS,
) -> dg.SensorDefinition:
    """``warehouse_sensor`` over the Delta tables ``inputs`` (silver and gold paths)."""
    inputs = list(inputs)

    @dg.sensor(
        name=WAREHOUSE_SENSOR_NAME,
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Rebuilds the dbt marts (refresh_warehouse) for the days whose silver/gold changed, "
            "at most once a minute, one run at a time."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
        try:
            root = lake.lake()
        except ConfigError as exc:
            return dg.SensorResult(skip_reason=str(exc), cursor=context.cursor)
        runs = recent_warehouse_runs(context.instance)
        changes = read_changes(root, inputs, baseline(runs, context.cursor))
        return decide_warehouse(changes, runs, context.cursor)

    return _sensor
