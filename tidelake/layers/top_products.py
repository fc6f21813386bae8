"""``gold/top_products_last_hour``: one exact ranking appended per refresh after page views change.

Unlike the hourly tables, each refresh *adds* a ranking (``as_of`` = the refresh time, the rows of
the greatest ``as_of`` are the latest): :func:`tidelake.transform.top_products.top_products` over
the silver page views of the hour partitions the window ``[as_of - 1 h, as_of)`` overlaps. A
refresh is due when ``silver/shop_page_views`` has a version newer than the one the last ranking
read (the Delta txn ``tidelake:gold/top_products_last_hour:silver/shop_page_views``, written in the
same commit as the ranking), so a re-run with nothing new appends nothing, and a crash before the
commit leaves no partial ranking (one atomic append).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
from deltalake import CommitProperties, Transaction, write_deltalake

from tidelake.contracts import BRONZE_PARTITION_BY, TOPICS
from tidelake.ingest.tables import ensure_table
from tidelake.lake import Lake
from tidelake.layers.derive import read_hours
from tidelake.layers.hours import key_of
from tidelake.layers.lineage import DeriveAnnotation, watermark_app_id
from tidelake.transform.top_products import TOP_PRODUCTS_SCHEMA, top_products
from tidelake.transform.windows import to_arrow

TOP_PRODUCTS_PATH = "gold/top_products_last_hour"
PAGE_VIEWS = TOPICS["shop.page_views"]
WINDOW = timedelta(hours=1)
TOP_N = 10
COLUMNS = ("event_id", "event_type", "event_time", "product_id", "user_id")


@dataclass(frozen=True)
class RankingResult:
    """One appended ranking."""

    as_of: datetime
    rows: int
    version: int
    page_views_version: int


def ranking_hours(as_of: datetime, window: timedelta = WINDOW) -> list[str]:
    """The hour partition keys that ``[as_of - window, as_of)`` overlaps."""
    start = (as_of - window).replace(minute=0, second=0, microsecond=0)
    keys = []
    while start < as_of:
        keys.append(key_of(start.date(), start.hour))
        start += timedelta(hours=1)
    return keys


def top_products_due(lake: Lake) -> bool:
    """Whether page views changed since the last ranking (module docstring)."""
    silver = lake.open(PAGE_VIEWS.silver_path)
    if silver is None:
        return False
    out = lake.open(TOP_PRODUCTS_PATH)
    mark = (
        None
        if out is None
        else out.transaction_version(watermark_app_id(TOP_PRODUCTS_PATH, PAGE_VIEWS.silver_path))
    )
    return mark is None or mark < silver.version()


def refresh_top_products(
    lake: Lake, *, now: datetime | None = None, force: bool = False
) -> RankingResult | None:
    """Append the ranking as of ``now`` if page views changed since the last one (or ``force``);
    None when nothing was due."""
    silver = lake.open(PAGE_VIEWS.silver_path)
    if silver is None or not (force or top_products_due(lake)):
        return None
    as_of = (now or datetime.now(UTC)).astimezone(UTC)
    views = pl.from_arrow(read_hours(silver, ranking_hours(as_of), COLUMNS))
    assert isinstance(views, pl.DataFrame)
    ranking = top_products(views, as_of=as_of, window=WINDOW, n=TOP_N)
    table = ensure_table(
        lake,
        TOP_PRODUCTS_PATH,
        TOP_PRODUCTS_SCHEMA,
        BRONZE_PARTITION_BY,
        "The 10 most viewed products of the hour before each refresh (as_of); the latest "
        "ranking is the rows with the greatest as_of.",
    )
    read = silver.version()
    write_deltalake(
        table,
        to_arrow(ranking, TOP_PRODUCTS_SCHEMA),
        mode="append",
        partition_by=list(BRONZE_PARTITION_BY),
        commit_properties=CommitProperties(
            # The derive annotation (inputs read, the as_of hour) lets readers of the log tell
            # which page-view version a ranking counted (the freshness benchmark does).
            custom_metadata=DeriveAnnotation(
                output=TOP_PRODUCTS_PATH,
                hours=[key_of(as_of.date(), as_of.hour)],
                inputs={PAGE_VIEWS.silver_path: read},
                complete=True,
                rows=ranking.height,
            ).custom_metadata(),
            app_transactions=[
                Transaction(watermark_app_id(TOP_PRODUCTS_PATH, PAGE_VIEWS.silver_path), read)
            ],
        ),
    )
    return RankingResult(as_of, ranking.height, table.version(), read)


def latest_ranking(lake: Lake, now: datetime | None = None) -> pl.DataFrame:
    """The rows of the latest ranking (greatest ``as_of``), by rank; empty when none. Reads the
    hour partitions of the last two hours first (a live table ranks every few seconds) and the
    whole table only when they hold no ranking."""
    table = lake.open(TOP_PRODUCTS_PATH)
    if table is None:
        return pl.from_arrow(TOP_PRODUCTS_SCHEMA.empty_table())  # type: ignore[return-value]
    at = (now or datetime.now(UTC)).astimezone(UTC) + timedelta(hours=1)
    frame = pl.from_arrow(read_hours(table, ranking_hours(at, timedelta(hours=2))))
    assert isinstance(frame, pl.DataFrame)
    if frame.is_empty():
        whole = pl.from_arrow(table.to_pyarrow_table())
        assert isinstance(whole, pl.DataFrame)
        frame = whole
    if frame.is_empty():
        return frame
    return frame.filter(pl.col("as_of") == pl.col("as_of").max()).sort("rank")


__all__ = [
    "TOP_PRODUCTS_PATH",
    "RankingResult",
    "latest_ranking",
    "ranking_hours",
    "refresh_top_products",
    "top_products_due",
]
