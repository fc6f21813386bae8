"""``gold/user_activity`` and ``gold/cohort_retention`` over a real lake."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from test_layers_fraud import NOW, OPEN, PAGE_VIEWS, PURCHASES, SETTINGS, Shop

from tidelake.lake import Lake
from tidelake.layers import refresh_silver
from tidelake.layers.cohorts import (
    COHORT_RETENTION_PATH,
    cohorts_due,
    refresh_cohorts,
    refresh_user_activity,
)
from tidelake.settings import LakeSettings

TODAY = OPEN.date()


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop(Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake"))))


def visit(shop: Shop, user: str, days_ago: int) -> None:
    at = OPEN - timedelta(days=days_ago) + timedelta(minutes=5)
    shop.send(
        PAGE_VIEWS,
        at,
        user_id=user,
        event_type="page_view",
        session_id=f"s-{user}",
        product_id=None,
        page="/",
        referrer=None,
        device="web",
    )


def settle(shop: Shop) -> None:
    for c in (PAGE_VIEWS, PURCHASES):
        shop.engine.ingest_topic(c)
        refresh_silver(shop.lake, c, settings=SETTINGS, now=NOW)
    refresh_user_activity(shop.lake, settings=SETTINGS, now=NOW)


def stored(lake: Lake) -> dict[tuple[date, int], tuple[int, int, int]]:
    table = lake.open(COHORT_RETENTION_PATH)
    assert table is not None
    frame = pl.from_arrow(table.to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return {
        (r["cohort_date"], r["day_offset"]): (
            r["cohort_size"],
            r["retained_users"],
            r["retained_users_unbounded"],
        )
        for r in frame.iter_rows(named=True)
    }


def reference(visits: dict[str, set[int]]) -> dict[tuple[date, int], tuple[int, int, int]]:
    """Straightforward recomputation: days_ago sets per user → cohort rows up to today."""
    days = {u: {TODAY - timedelta(days=d) for d in ds} for u, ds in visits.items()}
    first = {u: min(ds) for u, ds in days.items()}
    out = {}
    for cohort in set(first.values()):
        members = [u for u in days if first[u] == cohort]
        for offset in range(31):
            day = cohort + timedelta(days=offset)
            if day > TODAY:
                break
            on = sum(1 for u in members if day in days[u])
            after = sum(1 for u in members if any(d >= day for d in days[u]))
            out[(cohort, offset)] = (len(members), on, after)
    return out


def test_cohorts_equal_a_straightforward_recomputation_and_a_rerun_commits_nothing(
    shop: Shop,
) -> None:
    visits = {"a": {5, 4, 0}, "b": {5, 2}, "c": {3}, "d": {3, 1, 0}, "e": {0}}
    for user, ds in visits.items():
        for d in ds:
            visit(shop, user, d)
    settle(shop)

    first = refresh_cohorts(shop.lake, today=TODAY)

    assert stored(shop.lake) == reference(visits)
    assert first.version is not None
    assert not cohorts_due(shop.lake, today=TODAY)
    assert refresh_cohorts(shop.lake, today=TODAY).version is None


def test_a_late_first_event_moves_its_user_and_rewrites_only_the_cohorts_it_changed(
    shop: Shop,
) -> None:
    visits = {"a": {5, 4}, "b": {2, 1}, "c": {1}}
    for user, ds in visits.items():
        for d in ds:
            visit(shop, user, d)
    settle(shop)
    refresh_cohorts(shop.lake, today=TODAY)

    visit(shop, "c", 4)  # late: c's first event was 4 days ago, not 1
    settle(shop)
    assert cohorts_due(shop.lake, today=TODAY)
    result = refresh_cohorts(shop.lake, today=TODAY)

    visits["c"].add(4)
    assert stored(shop.lake) == reference(visits)
    assert result.cohorts == [TODAY - timedelta(days=4), TODAY - timedelta(days=1)]


def test_a_new_day_adds_the_next_day_offset_of_recent_cohorts(shop: Shop) -> None:
    visit(shop, "a", 2)
    settle(shop)
    refresh_cohorts(shop.lake, today=TODAY)
    assert max(o for _, o in stored(shop.lake)) == 2

    assert not cohorts_due(shop.lake, today=TODAY)
    assert cohorts_due(shop.lake, today=TODAY + timedelta(days=1)), "a new day is due"
    tomorrow = refresh_cohorts(shop.lake, today=TODAY + timedelta(days=1))

    assert tomorrow.cohorts == [TODAY - timedelta(days=2)]
    assert stored(shop.lake)[(TODAY - timedelta(days=2), 3)] == (1, 0, 0)
