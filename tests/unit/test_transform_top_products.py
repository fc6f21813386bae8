"""Gold top products: ranking order, window bounds, what counts as a view, schema."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from tidelake.transform.top_products import TOP_PRODUCTS_SCHEMA, top_products
from tidelake.transform.windows import to_arrow

AS_OF = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
START = AS_OF - timedelta(hours=1)


def views(
    rows: Sequence[tuple[datetime, str | None, str | None]], **extra: list[str]
) -> pl.DataFrame:
    """Page views of (event_time, product_id, user_id), one event each."""
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "event_type": extra.get("event_type", ["page_view"] * len(rows)),
            "event_time": [r[0] for r in rows],
            "product_id": [r[1] for r in rows],
            "user_id": [r[2] for r in rows],
        },
        schema={
            "event_id": pl.String,
            "event_type": pl.String,
            "event_time": pl.Datetime("us", "UTC"),
            "product_id": pl.String,
            "user_id": pl.String,
        },
    )


def ranking(frame: pl.DataFrame) -> list[tuple[int, str, int, int]]:
    return [
        (r["rank"], r["product_id"], r["views"], r["unique_viewers"])
        for r in frame.iter_rows(named=True)
    ]


def test_views_desc_then_ties_ordered_by_product_id_with_distinct_ranks() -> None:
    t = START + timedelta(minutes=5)
    rows = [(t, p, "u1") for p in ["p9", "p9", "p3", "p3", "p5", "p1", "p7", "p7", "p7"]]
    out = top_products(views(rows), as_of=AS_OF)
    assert ranking(out) == [
        (1, "p7", 3, 1),
        (2, "p3", 2, 1),
        (3, "p9", 2, 1),
        (4, "p1", 1, 1),
        (5, "p5", 1, 1),
    ]


def test_an_event_at_window_start_counts_and_one_at_as_of_does_not() -> None:
    rows = [
        (START, "p-start", "u1"),
        (START - timedelta(microseconds=1), "p-before", "u1"),
        (AS_OF - timedelta(microseconds=1), "p-last", "u1"),
        (AS_OF, "p-as-of", "u1"),
    ]
    out = top_products(views(rows), as_of=AS_OF)
    assert sorted(out["product_id"]) == ["p-last", "p-start"]


def test_a_shorter_window_answers_the_last_minutes() -> None:
    rows = [(AS_OF - timedelta(minutes=m), "p1", "u1") for m in (1, 4, 6, 50)]
    out = top_products(views(rows), as_of=AS_OF, window=timedelta(minutes=5))
    assert ranking(out) == [(1, "p1", 2, 1)]
    assert out["window_start"][0] == AS_OF - timedelta(minutes=5)


def test_null_product_ids_and_other_event_types_are_ignored() -> None:
    t = START + timedelta(minutes=1)
    frame = views(
        [(t, None, "u1"), (t, None, "u2"), (t, "p1", "u1"), (t, "p2", "u1")],
        event_type=["page_view", "page_view", "page_view", "click"],
    )
    assert ranking(top_products(frame, as_of=AS_OF)) == [(1, "p1", 1, 1)]


def test_fewer_products_than_n_and_n_cuts_the_ranking() -> None:
    t = START + timedelta(minutes=1)
    rows = [(t, f"p{i}", "u") for i in range(12) for _ in range(i + 1)]
    assert top_products(views(rows[:3]), as_of=AS_OF).height == 2
    out = top_products(views(rows), as_of=AS_OF)
    assert out["rank"].to_list() == list(range(1, 11))
    assert out["product_id"].to_list() == [f"p{i}" for i in range(11, 1, -1)]
    assert top_products(views(rows), as_of=AS_OF, n=3)["product_id"].to_list() == [
        "p11",
        "p10",
        "p9",
    ]


def test_unique_viewers_count_distinct_users_and_a_repeated_event_id_counts_once() -> None:
    t = START + timedelta(minutes=1)
    frame = views([(t, "p1", "u1"), (t, "p1", "u1"), (t, "p1", "u2"), (t, "p1", None)])
    assert ranking(top_products(frame, as_of=AS_OF)) == [(1, "p1", 4, 2)]
    duplicated = pl.concat([frame, frame.head(1)])
    assert ranking(top_products(duplicated, as_of=AS_OF)) == [(1, "p1", 4, 2)]


def test_rows_carry_as_of_window_start_and_its_partition_and_fit_the_schema() -> None:
    as_of = datetime(2026, 3, 2, 0, 0, 30, tzinfo=UTC)
    out = top_products(views([(as_of - timedelta(minutes=2), "p1", "u1")]), as_of=as_of)
    row = out.row(0, named=True)
    assert row["as_of"] == as_of
    assert row["window_start"] == as_of - timedelta(hours=1)
    assert (row["event_date"], row["event_hour"]) == (date(2026, 3, 2), 0)
    assert to_arrow(out, TOP_PRODUCTS_SCHEMA).schema == TOP_PRODUCTS_SCHEMA


@pytest.mark.parametrize(
    "frame",
    [
        views([]),
        views([(START - timedelta(minutes=1), "p1", "u1")]),
        pl.DataFrame(),
    ],
    ids=["no-rows", "nothing-in-window", "no-columns"],
)
def test_no_views_in_the_window_gives_an_empty_frame_with_the_schema(
    frame: pl.DataFrame,
) -> None:
    out = top_products(frame, as_of=AS_OF)
    assert out.height == 0
    assert out.columns == TOP_PRODUCTS_SCHEMA.names
    assert to_arrow(out, TOP_PRODUCTS_SCHEMA).schema == TOP_PRODUCTS_SCHEMA


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        top_products(views([]), as_of=datetime(2026, 3, 1, 11, 0))
    with pytest.raises(ValueError, match="window"):
        top_products(views([]), as_of=AS_OF, window=timedelta(0))
    with pytest.raises(ValueError, match="n must"):
        top_products(views([]), as_of=AS_OF, n=0)
