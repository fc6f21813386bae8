"""Gold cohort retention: definitions against a plain-Python reference, late data, cut-offs."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from tidelake.transform.cohorts import (
    COHORT_RETENTION_SCHEMA,
    affected_cohorts,
    cohort_retention,
    cohorts_touched,
    user_activity,
)
from tidelake.transform.windows import to_arrow

D0 = date(2026, 3, 1)


def activity(pairs: list[tuple[str, date]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"user_id": [u for u, _ in pairs], "activity_date": [d for _, d in pairs]},
        schema={"user_id": pl.String, "activity_date": pl.Date},
    )


def random_pairs(seed: int, users: int = 60, days: int = 40) -> list[tuple[str, date]]:
    rng = random.Random(seed)
    pairs = []
    for u in range(users):
        first = rng.randrange(days)
        pairs.append((f"u{u}", D0 + timedelta(days=first)))
        p = rng.random()
        pairs.extend(
            (f"u{u}", D0 + timedelta(days=d)) for d in range(first + 1, days) if rng.random() < p
        )
    return pairs


def reference(
    pairs: list[tuple[str, date]], max_offset: int, as_of: date
) -> dict[tuple[date, int], tuple[int, int, int]]:
    """(cohort, offset) -> (size, retained on the day, retained on or after), by brute force."""
    days: dict[str, set[date]] = {}
    for user, day in pairs:
        if day <= as_of:
            days.setdefault(user, set()).add(day)
    cohorts: dict[date, list[str]] = {}
    for user, active in days.items():
        cohorts.setdefault(min(active), []).append(user)
    out = {}
    for cohort, members in cohorts.items():
        for k in range(max_offset + 1):
            day = cohort + timedelta(days=k)
            if day > as_of:
                break
            on = sum(1 for m in members if day in days[m])
            after = sum(1 for m in members if max(days[m]) >= day)
            out[(cohort, k)] = (len(members), on, after)
    return out


def as_dict(frame: pl.DataFrame) -> dict[tuple[date, int], tuple[int, int, int]]:
    return {
        (r["cohort_date"], r["day_offset"]): (
            r["cohort_size"],
            r["retained_users"],
            r["retained_users_unbounded"],
        )
        for r in frame.iter_rows(named=True)
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bounded_and_unbounded_retention_equal_a_brute_force_reference(seed: int) -> None:
    pairs = random_pairs(seed)
    as_of = D0 + timedelta(days=39)
    out = cohort_retention(activity(pairs))
    assert as_dict(out) == reference(pairs, 30, as_of)
    for r in out.iter_rows(named=True):
        assert r["retention_rate"] == pytest.approx(r["retained_users"] / r["cohort_size"])
        assert r["retention_rate_unbounded"] == pytest.approx(
            r["retained_users_unbounded"] / r["cohort_size"]
        )
    small = cohort_retention(activity(pairs), max_offset=7, as_of=D0 + timedelta(days=20))
    assert as_dict(small) == reference(pairs, 7, D0 + timedelta(days=20))


def test_day_zero_is_everyone_and_unbounded_never_rises_nor_falls_below_bounded() -> None:
    out = cohort_retention(activity(random_pairs(3)))
    day0 = out.filter(pl.col("day_offset") == 0)
    assert (day0["retained_users"] == day0["cohort_size"]).all()
    assert (day0["retention_rate"] == 1.0).all()
    assert (out["retained_users_unbounded"] >= out["retained_users"]).all()
    steps = out.with_columns(
        pl.col("retained_users_unbounded").diff().over("cohort_date").alias("step")
    )
    assert (steps["step"].drop_nulls() <= 0).all()


def test_days_after_as_of_have_no_rows_and_later_activity_is_ignored() -> None:
    pairs = [("a", D0), ("a", D0 + timedelta(days=2)), ("b", D0 + timedelta(days=1))]
    pairs.append(("a", D0 + timedelta(days=9)))
    out = cohort_retention(activity(pairs), as_of=D0 + timedelta(days=3))
    assert as_dict(out) == {
        (D0, 0): (1, 1, 1),
        (D0, 1): (1, 0, 1),
        (D0, 2): (1, 1, 1),
        (D0, 3): (1, 0, 0),
        (D0 + timedelta(days=1), 0): (1, 1, 1),
        (D0 + timedelta(days=1), 1): (1, 0, 0),
        (D0 + timedelta(days=1), 2): (1, 0, 0),
    }
    # Without as_of the latest activity day is the cut-off: a's day 9 counts on or after.
    default = as_dict(cohort_retention(activity(pairs)))
    assert max(k for c, k in default if c == D0) == 9
    assert default[(D0, 3)] == (1, 0, 1)


def test_offsets_stop_at_max_offset_but_unbounded_sees_later_days() -> None:
    pairs = [("a", D0), ("a", D0 + timedelta(days=45))]
    out = as_dict(cohort_retention(activity(pairs)))
    assert max(k for _, k in out) == 30
    assert out[(D0, 30)] == (1, 0, 1)
    assert out[(D0, 1)] == (1, 0, 1)


def test_cohort_dates_restrict_the_output_without_changing_the_rows() -> None:
    pairs = random_pairs(4)
    full = as_dict(cohort_retention(activity(pairs)))
    picked = [D0 + timedelta(days=3), D0 + timedelta(days=17)]
    some = as_dict(cohort_retention(activity(pairs), cohort_dates=picked))
    assert {c for c, _ in some} <= set(picked)
    assert some == {k: v for k, v in full.items() if k[0] in picked}


def test_a_late_event_on_an_old_day_changes_only_the_cohorts_it_touches() -> None:
    day = [D0 + timedelta(days=k) for k in range(40)]
    pairs = [p for p in random_pairs(5) if p[0] != "u7"]
    pairs += [("u-late", day[30]), ("u-old", day[5]), ("u-old", day[6])]
    pairs += [("u-ancient", day[1]), ("u-ancient", day[2])]
    as_of = day[39]
    before = as_dict(cohort_retention(activity(pairs), as_of=as_of))
    # u-late's first event moves from day 30 to day 10; u-old is seen again on day 10;
    # u-ancient on day 35, beyond its cohort's 30 days: only its unbounded rows change.
    late = [("u-late", day[10]), ("u-old", day[10]), ("u-ancient", day[35])]
    after = as_dict(cohort_retention(activity(pairs + late), as_of=as_of))
    cohorts = {c for c, _ in before} | {c for c, _ in after}
    changed = {c for c in cohorts if _rows(before, c) != _rows(after, c)}
    assert changed == {day[1], day[5], day[10], day[30]}
    assert cohorts_touched(activity(late), activity(pairs)) == [day[1], day[5], day[10], day[30]]
    assert after[(day[5], 5)][1] == before[(day[5], 5)][1] + 1
    assert after[(day[1], 30)] == (before[(day[1], 30)][0], 0, before[(day[1], 30)][2] + 1)
    assert after[(day[30], 0)][0] == before[(day[30], 0)][0] - 1
    # The date-only bound covers the bounded rows; membership moves and the unbounded rows of
    # old cohorts are what it cannot see.
    assert {day[5], day[10]} <= set(affected_cohorts([day[10]]))
    assert day[30] not in affected_cohorts([day[10]])  # u-late's old cohort
    assert day[1] not in affected_cohorts([day[35]])  # u-ancient's unbounded rows
    bounded_changed = {
        c
        for c in cohorts
        if {k: v[:2] for k, v in _rows(before, c).items()}
        != {k: v[:2] for k, v in _rows(after, c).items()}
    }
    assert day[1] not in bounded_changed


def _rows(table: dict[tuple[date, int], tuple[int, int, int]], cohort: date) -> dict[int, tuple]:
    return {k: v for (c, k), v in table.items() if c == cohort}


def test_cohorts_touched_ignores_activity_that_is_already_known() -> None:
    history = activity([("a", D0), ("a", D0 + timedelta(days=3)), ("b", D0 + timedelta(days=2))])
    assert cohorts_touched(activity([("a", D0 + timedelta(days=3))]), history) == []
    assert cohorts_touched(activity([("a", D0 + timedelta(days=4))]), history) == [D0]
    assert cohorts_touched(activity([("c", D0 + timedelta(days=5))]), history) == [
        D0 + timedelta(days=5)
    ]
    assert cohorts_touched(activity([("b", D0)]), history) == [D0, D0 + timedelta(days=2)]


def test_affected_cohorts_of_several_days_are_distinct_and_sorted() -> None:
    got = affected_cohorts([D0, D0 + timedelta(days=1)], max_offset=2)
    assert got == [D0 + timedelta(days=k) for k in (-2, -1, 0, 1)]


def test_user_activity_is_distinct_utc_days_of_users() -> None:
    times = [
        datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
    ]
    events = pl.DataFrame(
        {"user_id": ["a", "a", "a", None], "event_time": times},
        schema={"user_id": pl.String, "event_time": pl.Datetime("us", "UTC")},
    )
    out = user_activity(events)
    assert out.rows() == [("a", date(2026, 3, 1)), ("a", date(2026, 3, 2))]
    assert user_activity(events.head(0)).columns == ["user_id", "activity_date"]


def test_output_fits_the_schema_and_empty_activity_gives_no_rows() -> None:
    out = cohort_retention(activity(random_pairs(6)))
    assert to_arrow(out, COHORT_RETENTION_SCHEMA).schema == COHORT_RETENTION_SCHEMA
    empty = cohort_retention(activity([]))
    assert empty.height == 0
    assert to_arrow(empty, COHORT_RETENTION_SCHEMA).schema == COHORT_RETENTION_SCHEMA
    with pytest.raises(ValueError, match="max_offset"):
        cohort_retention(activity([]), max_offset=-1)


def test_thirty_days_of_a_hundred_thousand_users_is_vectorised() -> None:

    import numpy as np

    rng = np.random.default_rng(0)
    users = 100_000
    first = rng.integers(0, 30, users)
    rows = rng.integers(0, users, 2_000_000)
    days = first[rows] + rng.integers(0, 30, rows.size)
    frame = pl.DataFrame(
        {
            "user_id": np.char.add("u", np.concatenate([np.arange(users), rows]).astype(str)),
            "activity_date": np.concatenate([first, days]).astype("timedelta64[D]")
            + np.datetime64(D0),
        }
    ).with_columns(pl.col("activity_date").cast(pl.Date))
    # Speed is measured in benchmarks/, not asserted here (shared machines make timings flaky).
    out = cohort_retention(frame, as_of=D0 + timedelta(days=59))
    assert out.height == 30 * 31
    assert out["cohort_size"].unique().sum() > 0
    assert int(out.filter(pl.col("day_offset") == 0)["cohort_size"].sum()) == users
