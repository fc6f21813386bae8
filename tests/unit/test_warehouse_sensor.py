"""warehouse_sensor: rebuild the dbt marts for the days whose silver/gold changed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
from deltalake import CommitProperties, write_deltalake

from assets.dbt import WINDOW_TAG, window_from_tags
from sensors.warehouse import (
    VERSIONS_TAG,
    WAREHOUSE_TAG,
    InputChanges,
    baseline,
    decide_warehouse,
    read_changes,
)
from tidelake.lake import Lake
from tidelake.layers.lineage import DeriveAnnotation

SILVER = "silver/shop_clicks"
GOLD = "gold/events_per_minute"


def derive(lake: Lake, path: str, hours: list[str]) -> None:
    note = DeriveAnnotation(output=path, hours=hours, inputs={}, complete=True, rows=1)
    write_deltalake(
        lake.uri(path),
        pa.table({"x": [1]}),
        mode="append",
        commit_properties=CommitProperties(custom_metadata=note.custom_metadata()),
    )


def foreign(lake: Lake, path: str) -> None:
    """A commit by another tool: it does not say which hours it changed."""
    write_deltalake(lake.uri(path), pa.table({"x": [2]}), mode="append")


def run(status: dg.DagsterRunStatus, versions: dict[str, int] | None = None) -> dg.RunRecord:
    at = datetime(2026, 12, 2, tzinfo=UTC)
    tags = {WAREHOUSE_TAG: "warehouse"}
    if versions is not None:
        tags[VERSIONS_TAG] = json.dumps(versions)
    return dg.RunRecord(
        storage_id=1,
        dagster_run=dg.DagsterRun(job_name="refresh_warehouse", status=status, tags=tags),
        create_timestamp=at,
        update_timestamp=at,
        end_time=None,
    )


def test_changes_name_the_days_the_new_commits_touched(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path), storage_options={})
    derive(lake, SILVER, ["2026-12-01-10:00"])
    derive(lake, GOLD, ["2026-12-01-10:00"])
    first = read_changes(lake, [SILVER, GOLD], {})
    assert first.full, "no cursor yet: a full build"
    derive(lake, SILVER, ["2026-11-28-03:00", "2026-12-01-11:00"])

    later = read_changes(lake, [SILVER, GOLD], first.versions)

    assert (later.full, later.days) == (False, {"2026-11-28", "2026-12-01"})
    assert later.versions == {SILVER: 1, GOLD: 0}
    assert not read_changes(lake, [SILVER, GOLD], later.versions).changed


def test_a_commit_that_does_not_name_its_hours_asks_for_a_full_build(tmp_path: Path) -> None:
    lake = Lake(root=str(tmp_path), storage_options={})
    derive(lake, SILVER, ["2026-12-01-10:00"])
    seen = read_changes(lake, [SILVER, GOLD], {}).versions
    foreign(lake, SILVER)

    assert read_changes(lake, [SILVER, GOLD], seen).full


def test_a_request_carries_the_day_window_and_advances_the_cursor() -> None:
    changes = InputChanges({SILVER: 4}, {"2026-12-01", "2026-11-28"}, full=False)

    result = decide_warehouse(changes, [], None)

    [request] = result.run_requests or []
    assert request.tags[WINDOW_TAG] == "2026-11-28..2026-12-01"
    assert window_from_tags(request.tags) is not None
    assert json.loads(result.cursor or "") == {SILVER: 4}
    full = decide_warehouse(InputChanges({SILVER: 5}, set(), full=True), [], result.cursor)
    [rebuild] = full.run_requests or []
    assert WINDOW_TAG not in rebuild.tags and window_from_tags(rebuild.tags) is None


def test_nothing_changed_or_a_run_in_flight_skips_without_losing_the_change() -> None:
    assert not decide_warehouse(InputChanges({SILVER: 4}, set(), False), [], None).run_requests
    changes = InputChanges({SILVER: 5}, {"2026-12-01"}, full=False)
    cursor = json.dumps({SILVER: 4})

    held = decide_warehouse(changes, [run(dg.DagsterRunStatus.STARTED)], cursor)

    assert not held.run_requests and held.cursor == cursor, "asked again once the run ends"


def test_after_a_failed_build_its_days_are_asked_again_from_the_last_success(
    tmp_path: Path,
) -> None:
    lake = Lake(root=str(tmp_path), storage_options={})
    derive(lake, SILVER, ["2026-12-01-10:00"])
    good = {SILVER: 0}
    derive(lake, SILVER, ["2026-11-30-10:00"])  # v1: the failed build was for this day
    failed = run(dg.DagsterRunStatus.FAILURE, {SILVER: 1})
    runs = [failed, run(dg.DagsterRunStatus.SUCCESS, good)]

    since = baseline(runs, cursor=json.dumps({SILVER: 1}))
    changes = read_changes(lake, [SILVER], since)

    assert since == good, "the failed run's versions are not a baseline"
    assert changes.days == {"2026-11-30"}
