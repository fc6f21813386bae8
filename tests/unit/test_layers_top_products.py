"""``gold/top_products_last_hour`` over a real lake: one ranking appended per page-view change."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from test_layers_fraud import NOW, OPEN, PAGE_VIEWS, SETTINGS, Shop

from tidelake.lake import Lake
from tidelake.layers import refresh_silver
from tidelake.layers.top_products import (
    TOP_PRODUCTS_PATH,
    latest_ranking,
    ranking_hours,
    refresh_top_products,
    top_products_due,
)
from tidelake.settings import LakeSettings


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop(Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake"))))


def settle(shop: Shop) -> None:
    shop.engine.ingest_topic(PAGE_VIEWS)
    refresh_silver(shop.lake, PAGE_VIEWS, settings=SETTINGS, now=NOW)


def test_the_window_spans_the_two_hours_it_overlaps() -> None:
    assert len(ranking_hours(OPEN + timedelta(minutes=30))) == 2
    assert len(ranking_hours(OPEN)) == 1


def test_a_ranking_is_appended_per_page_view_change_and_only_then(shop: Shop) -> None:
    assert refresh_top_products(shop.lake, now=NOW) is None, "no page views yet"
    for minute, product in [(1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "c"), (6, "c")]:
        shop.view(OPEN + timedelta(minutes=minute), session=f"s{minute}", product=product)
    shop.view(OPEN - timedelta(minutes=61), product="old")  # outside the hour before NOW
    settle(shop)

    first = refresh_top_products(shop.lake, now=NOW)

    assert first is not None and first.rows == 3
    ranking = latest_ranking(shop.lake, NOW)
    assert ranking.select("rank", "product_id", "views").rows() == [
        (1, "c", 3),
        (2, "b", 2),
        (3, "a", 1),
    ]
    assert not top_products_due(shop.lake)
    assert refresh_top_products(shop.lake, now=NOW + timedelta(seconds=5)) is None

    shop.view(OPEN + timedelta(minutes=7), product="a")
    shop.view(OPEN + timedelta(minutes=8), product="a")
    settle(shop)
    later = NOW + timedelta(seconds=10)
    assert refresh_top_products(shop.lake, now=later) is not None
    latest = latest_ranking(shop.lake, later)
    assert latest.select("product_id", "views").rows()[0] == ("a", 3), "ties: a before c"
    table = shop.lake.open(TOP_PRODUCTS_PATH)
    assert table is not None and table.to_pyarrow_table().num_rows == 6, "both rankings kept"
