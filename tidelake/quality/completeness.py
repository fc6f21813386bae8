"""Silver checks per hour partition, as pure functions (no Dagster): complete, unique, = bronze.

DESIGN, "Checks that must hold": silver holds each ``event_id`` once; per hour, silver events =
distinct bronze ``event_id``s; per (topic, minute of ``event_time``), the producer ledger's count
= silver's count when a ledger exists. Each check reads only the hour's partitions of
``silver/<table>`` and ``bronze/<table>`` (filters on ``event_date``/``event_hour``) and the
ledger's rows of the topic in the hour's ``event_time`` range, so it costs O(hour).

* :func:`silver_completeness`: per minute, the ledger's distinct ``event_id``s (kinds on_time,
  late, duplicate) = silver rows, over the minutes the ledger covers (see
  :func:`covered_minutes`); an hour the ledger has no row of falls back to bronze accounting:
  per minute, the distinct bronze ``event_id``s (each placed where its first delivery is) =
  silver rows.
* :func:`silver_unique`: no ``event_id`` twice in the hour.
* :func:`silver_matches_bronze`: silver rows of the hour = distinct bronze ``event_id``s, and the
  same ids.

A missing silver table reads as empty: an hour with events and no silver is incomplete, an hour
without data always passes. Rows of every physical topic (environment prefix) in a table count:
the checks take a contract, not a prefix. An ``event_id``'s deliveries are assumed to carry one
``event_time`` (producer retries resend the same event), so an event belongs to one minute.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads

from tidelake.contracts import TopicContract
from tidelake.lake import Lake
from tidelake.ledger import LEDGER_PATH, LedgerKind
from tidelake.quality.outcome import MAX_LISTED, CheckOutcome, count

SILVER_COMPLETENESS = "silver_completeness"
SILVER_UNIQUE = "silver_unique_event_id"
SILVER_MATCHES_BRONZE = "silver_matches_bronze"

SOURCE_LEDGER = "ledger"
SOURCE_BRONZE = "bronze"

HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"
"""Dagster's hourly partition key format (``2026-12-02-01:00``)."""

EVENT_KINDS: tuple[str, ...] = (LedgerKind.ON_TIME, LedgerKind.LATE, LedgerKind.DUPLICATE)
"""Ledger kinds whose event must be in silver once."""

_MINUTE_IDS = pl.Schema({"minute": pl.Datetime("us", "UTC"), "event_id": pl.String()})

__all__ = [
    "SILVER_COMPLETENESS",
    "SILVER_MATCHES_BRONZE",
    "SILVER_UNIQUE",
    "SOURCE_BRONZE",
    "SOURCE_LEDGER",
    "covered_minutes",
    "hour_bounds",
    "minute_accounting",
    "silver_completeness",
    "silver_matches_bronze",
    "silver_unique",
]


def hour_bounds(hour: str) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC of an hour partition key such as ``"2026-12-02-01:00"``.

    Raises:
        ValueError: ``hour`` is not an hour partition key.
    """
    start = datetime.strptime(hour, HOUR_KEY_FORMAT).replace(tzinfo=UTC)
    if start.minute:
        raise ValueError(f"{hour!r} is not an hour partition key (minutes must be 00)")
    return start, start + timedelta(hours=1)


def covered_minutes(ledger: pl.DataFrame) -> list[datetime]:
    """The minutes a ledger speaks for, from its event rows (``run_id``, ``event_time``).

    Rule: a producer run covers every minute from the minute of its first to the minute of its
    last ``event_time`` (within the rows given: one hour's); the ledger covers the union over
    runs. Inside that span every event the run sent is ledgered, so a minute in which it sent
    nothing must hold nothing either; outside it (before a run started, after it stopped, between
    runs) events may come from producers that keep no ledger, so those minutes are not checked.
    """
    if ledger.is_empty():
        return []
    spans = ledger.group_by("run_id").agg(
        pl.col("event_time").min().dt.truncate("1m").alias("first"),
        pl.col("event_time").max().dt.truncate("1m").alias("last"),
    )
    minutes = spans.select(
        pl.datetime_ranges("first", "last", interval="1m", time_unit="us", time_zone="UTC")
        .explode()
        .unique()
        .sort()
        .alias("minute")
    )
    return list(minutes.get_column("minute"))


def minute_accounting(expected: pl.DataFrame, silver: pl.DataFrame) -> pl.DataFrame:
    """Per minute: expected distinct ids vs silver rows, with the ids missing, extra or repeated.

    Args:
        expected: ``minute``, ``event_id`` of the events silver must hold (repeats ignored).
        silver: ``minute``, ``event_id`` of every silver row.

    Returns:
        ``minute``, ``expected``, ``silver_rows``, ``missing``, ``extra``, ``duplicate_ids``,
        ``missing_ids``, ``extra_ids`` (sorted samples), ``ok``; sorted by minute. A minute is OK
        when silver has each expected id exactly once and nothing else (then
        ``silver_rows == expected``).
    """
    keys = ["minute", "event_id"]
    want = expected.select(keys).unique().with_columns(pl.lit(True).alias("wanted"))
    have = silver.select(keys).group_by(keys).agg(pl.len().cast(pl.Int64).alias("rows"))
    ids = want.join(have, on=keys, how="full", coalesce=True).with_columns(
        pl.col("wanted").fill_null(False), pl.col("rows").fill_null(0)
    )
    return (
        ids.group_by("minute")
        .agg(
            pl.col("wanted").sum().cast(pl.Int64).alias("expected"),
            pl.col("rows").sum().alias("silver_rows"),
            (pl.col("wanted") & (pl.col("rows") == 0)).sum().cast(pl.Int64).alias("missing"),
            (~pl.col("wanted") & (pl.col("rows") > 0)).sum().cast(pl.Int64).alias("extra"),
            (pl.col("rows") > 1).sum().cast(pl.Int64).alias("duplicate_ids"),
            _sample(pl.col("wanted") & (pl.col("rows") == 0)).alias("missing_ids"),
            _sample(~pl.col("wanted") & (pl.col("rows") > 0)).alias("extra_ids"),
        )
        .with_columns(
            (
                (pl.col("missing") == 0) & (pl.col("extra") == 0) & (pl.col("duplicate_ids") == 0)
            ).alias("ok")
        )
        .sort("minute")
    )


def silver_completeness(
    lake: Lake, contract: TopicContract, hour: str, *, ledger_path: str = LEDGER_PATH
) -> CheckOutcome:
    """Per minute of the hour ``hour``, silver holds exactly the events that were produced.

    Source ``ledger`` when the ledger at ``ledger_path`` has event rows of this topic (logical
    name) in the hour: per covered minute (:func:`covered_minutes`), the ledger's distinct
    ``event_id``s of kinds on_time/late/duplicate = silver rows, and the same ids. Otherwise
    source ``bronze``: per minute, the distinct bronze ``event_id``s = silver rows (so silver is
    also unique). Metadata: ``hour``, ``source``, ``minutes_checked``, ``minutes_not_covered``,
    ``expected_events``, ``silver_rows``, ``mismatching_minutes`` and the first ``mismatches``
    with their figures and sample ids.
    """
    start, end = hour_bounds(hour)
    silver = _silver_minutes(lake, contract, hour)
    ledger = _ledger_events(lake, contract, start, end, ledger_path)
    meta: dict[str, Any] = {"hour": hour, "silver_exists": silver is not None}
    silver_ids = silver if silver is not None else pl.DataFrame(schema=_MINUTE_IDS)
    if ledger is not None and not ledger.is_empty():
        covered = covered_minutes(ledger)
        expected = ledger.select(_minute(), "event_id")
        accounting = _only_minutes(minute_accounting(expected, silver_ids), covered)
        not_covered = 60 - len(covered)
        source = SOURCE_LEDGER
    else:
        expected, _ = _bronze_first_deliveries(lake, contract, hour)
        accounting = minute_accounting(expected, silver_ids)
        not_covered = 0
        source = SOURCE_BRONZE
    bad = accounting.filter(~pl.col("ok"))
    meta |= {
        "source": source,
        "minutes_checked": accounting.height,
        "minutes_not_covered": not_covered,
        "expected_events": int(accounting.get_column("expected").sum()),
        "silver_rows": int(accounting.get_column("silver_rows").sum()),
        "mismatching_minutes": bad.height,
    }
    what = "the producer ledger" if source == SOURCE_LEDGER else "distinct bronze event_ids"
    if bad.height:
        meta["mismatches"] = _listed(bad)
        first = bad.row(0, named=True)
        return CheckOutcome(
            False,
            f"{count(bad.height, 'minute')} of {hour} where silver != {what}, first "
            f"{first['minute']:%H:%M}: {first['expected']} expected, {first['silver_rows']} in "
            f"silver ({first['missing']} missing, {first['extra']} extra, "
            f"{first['duplicate_ids']} repeated)",
            meta,
        )
    return CheckOutcome(
        True, f"{count(accounting.height, 'minute')} of {hour}: silver = {what}", meta
    )


def silver_unique(lake: Lake, contract: TopicContract, hour: str) -> CheckOutcome:
    """No ``event_id`` occurs twice in the silver hour partition ``hour`` (silver = each event
    once). Metadata: ``rows``, ``duplicate_ids``, ``extra_rows`` and the first ``examples``."""
    silver = _silver_minutes(lake, contract, hour)
    if silver is None:
        return CheckOutcome(True, "silver table does not exist yet", {"hour": hour, "rows": 0})
    dups = (
        silver.group_by("event_id")
        .agg(pl.len().alias("rows"))
        .filter(pl.col("rows") > 1)
        .sort("event_id")
    )
    extra = int(dups.get_column("rows").sum()) - dups.height if dups.height else 0
    meta: dict[str, Any] = {
        "hour": hour,
        "rows": silver.height,
        "duplicate_ids": dups.height,
        "extra_rows": extra,
    }
    if dups.height:
        meta["examples"] = dups.head(MAX_LISTED).to_dicts()
        return CheckOutcome(
            False,
            f"{count(dups.height, 'event_id')} more than once in silver {hour} "
            f"({extra} extra rows)",
            meta,
        )
    return CheckOutcome(True, f"{silver.height} silver rows of {hour}, every event_id once", meta)


def silver_matches_bronze(lake: Lake, contract: TopicContract, hour: str) -> CheckOutcome:
    """Silver rows of the hour ``hour`` = distinct bronze ``event_id``s of it, and the same ids:
    nothing lost, nothing invented, nothing twice. Metadata: ``bronze_rows``,
    ``bronze_event_ids``, ``silver_rows``, ``missing``, ``extra`` and sample ids."""
    silver = _silver_minutes(lake, contract, hour)
    silver_ids = silver if silver is not None else pl.DataFrame(schema=_MINUTE_IDS)
    bronze, bronze_rows = _bronze_first_deliveries(lake, contract, hour)
    want = set(bronze.get_column("event_id").to_list())
    have = silver_ids.get_column("event_id")
    have_set = set(have.to_list())
    missing, extra = sorted(want - have_set), sorted(have_set - want)
    meta: dict[str, Any] = {
        "hour": hour,
        "silver_exists": silver is not None,
        "bronze_rows": bronze_rows,
        "bronze_event_ids": len(want),
        "silver_rows": have.len(),
        "missing": len(missing),
        "extra": len(extra),
    }
    if missing or extra or have.len() != len(want):
        meta |= {"missing_ids": missing[:MAX_LISTED], "extra_ids": extra[:MAX_LISTED]}
        return CheckOutcome(
            False,
            f"silver {hour} has {have.len()} rows for {len(want)} distinct bronze event_ids "
            f"({len(missing)} missing, {len(extra)} not in bronze)",
            meta,
        )
    return CheckOutcome(True, f"silver {hour}: {have.len()} rows = distinct bronze event_ids", meta)


# --------------------------------------------------------------------------------------------------
# Reading one hour


def _hour_filter(hour: str) -> pads.Expression:
    """The partition filter of one hour (prunes files by their partition values)."""
    start, _ = hour_bounds(hour)
    return (pads.field("event_date") == pa.scalar(start.date(), pa.date32())) & (
        pads.field("event_hour") == pa.scalar(start.hour, pa.int32())
    )


def _read_hour(lake: Lake, path: str, columns: list[str], hour: str) -> pl.DataFrame | None:
    table = lake.open(path)
    if table is None:
        return None
    arrow = table.to_pyarrow_table(columns=columns, filters=_hour_filter(hour))
    return pl.DataFrame(pl.from_arrow(arrow))


def _silver_minutes(lake: Lake, contract: TopicContract, hour: str) -> pl.DataFrame | None:
    """``minute``, ``event_id`` of every silver row of the hour; ``None``: no silver table."""
    df = _read_hour(lake, contract.silver_path, ["event_id", "event_time"], hour)
    return None if df is None else df.select(_minute(), "event_id").cast(_MINUTE_IDS)


def _bronze_first_deliveries(
    lake: Lake, contract: TopicContract, hour: str
) -> tuple[pl.DataFrame, int]:
    """``minute``, ``event_id`` of each distinct bronze event of the hour, placed where its first
    delivery (silver's rule: smallest ``_ingested_at``, then ``_partition``, ``_offset``) is;
    and the bronze row count."""
    columns = ["event_id", "event_time", "_ingested_at", "_partition", "_offset"]
    df = _read_hour(lake, contract.bronze_path, columns, hour)
    if df is None:
        return pl.DataFrame(schema=_MINUTE_IDS), 0
    first = (
        df.sort("_ingested_at", "_partition", "_offset")
        .unique(subset="event_id", keep="first", maintain_order=True)
        .select(_minute(), "event_id")
        .cast(_MINUTE_IDS)
    )
    return first, df.height


def _ledger_events(
    lake: Lake, contract: TopicContract, start: datetime, end: datetime, ledger_path: str
) -> pl.DataFrame | None:
    """``run_id``, ``event_id``, ``event_time`` of the topic's ledger events in [start, end)."""
    table = lake.open(ledger_path)
    if table is None:
        return None
    ts = pa.timestamp("us", "UTC")
    rows = (
        (pads.field("topic") == contract.name)
        & (pads.field("event_time") >= pa.scalar(start, ts))
        & (pads.field("event_time") < pa.scalar(end, ts))
        & pads.field("kind").isin(list(EVENT_KINDS))
        & pads.field("event_id").is_valid()
    )
    arrow = table.to_pyarrow_table(columns=["run_id", "event_id", "event_time"], filters=rows)
    df = pl.DataFrame(pl.from_arrow(arrow))
    return df.with_columns(pl.col("event_time").dt.convert_time_zone("UTC"))


def _only_minutes(accounting: pl.DataFrame, minutes: list[datetime]) -> pl.DataFrame:
    """``accounting`` restricted to ``minutes``, a minute without any row being an empty OK one."""
    frame = pl.DataFrame({"minute": minutes}, schema={"minute": _MINUTE_IDS["minute"]})
    return frame.join(accounting, on="minute", how="left").with_columns(
        pl.col("expected", "silver_rows", "missing", "extra", "duplicate_ids").fill_null(0),
        pl.col("missing_ids", "extra_ids").fill_null([]),
        pl.col("ok").fill_null(True),
    )


def _minute() -> pl.Expr:
    return pl.col("event_time").dt.truncate("1m").alias("minute")


def _sample(flag: pl.Expr) -> pl.Expr:
    return pl.col("event_id").filter(flag).sort().head(MAX_LISTED)


def _listed(bad: pl.DataFrame) -> list[dict[str, Any]]:
    """The first mismatching minutes as metadata (minute as RFC 3339 text)."""
    head = bad.head(MAX_LISTED).drop("ok")
    return [r | {"minute": r["minute"].isoformat()} for r in head.to_dicts()]
