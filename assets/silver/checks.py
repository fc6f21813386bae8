"""Asset checks of every silver table, evaluated by the run that (re)wrote it, over exactly the
hours it wrote (reads those hour partitions, never the whole history).

Severity and blocking, on purpose:

* ``event_id_unique`` (ERROR, blocking): silver is "each logical event once"; a repeat would be
  counted twice by every gold table.
* ``pandera_schema`` (ERROR, blocking): the contract's pandera schema (bronze's, generated from the
  topic contract) plus ``_deliveries`` >= 1; rows off it would reach gold typed wrongly.
* ``matches_bronze`` (ERROR, blocking): per hour, silver rows = distinct bronze ``event_id``s,
  read at the bronze version the refresh read: bronze keeps ingesting into the open hour, so a
  comparison with its current version would fail whenever a batch landed after the refresh
  (why this is not :func:`tidelake.quality.completeness.silver_matches_bronze`, which reads the
  current version).
* ``complete_vs_ledger`` (WARN, not blocking): per (topic, minute), the producer ledger's count =
  silver's. The ledger counts what producers *sent*; events still in Kafka (consumer lag) make an
  hour short for a while, so gold must not stall on it; it must be seen, and it clears itself.
* ``events_before_partitions_start`` (WARN, not blocking): valid events older than
  ``TIDELAKE_PARTITIONS_START`` are in silver (and gold) but no Dagster partition shows them;
  counted from the Delta log, no data read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import dagster as dg
import pandera.polars as pa
import polars as pl
import pyarrow
from deltalake import DeltaTable

from assets.silver.metadata import hour_row_counts
from tidelake.contracts import TopicContract
from tidelake.lake import Lake
from tidelake.layers.derive import read_hours as read_partitions
from tidelake.quality.completeness import silver_completeness, silver_unique
from tidelake.quality.outcome import MAX_LISTED, CheckOutcome, count
from tidelake.quality.schema import bronze_dataframe_schema, validation_outcome

EVENT_ID_UNIQUE = "event_id_unique"
PANDERA_SCHEMA = "pandera_schema"
MATCHES_BRONZE = "matches_bronze"
COMPLETE_VS_LEDGER = "complete_vs_ledger"
EVENTS_BEFORE_PARTITIONS_START = "events_before_partitions_start"
SILVER_CHECK_NAMES: tuple[str, ...] = (
    EVENT_ID_UNIQUE,
    PANDERA_SCHEMA,
    MATCHES_BRONZE,
    COMPLETE_VS_LEDGER,
    EVENTS_BEFORE_PARTITIONS_START,
)
BLOCKING: frozenset[str] = frozenset({EVENT_ID_UNIQUE, PANDERA_SCHEMA, MATCHES_BRONZE})
"""The checks that stop gold from building on a bad silver hour (ERROR severity)."""


def silver_check_specs(key: dg.AssetKey, contract: TopicContract) -> list[dg.AssetCheckSpec]:
    """The check specs of one silver asset (see the module docstring for severities)."""
    descriptions = {
        EVENT_ID_UNIQUE: "Every event_id once in the hours this run wrote.",
        PANDERA_SCHEMA: (
            f"The rows this run wrote match the {contract.name} contract (pandera) plus "
            "_deliveries >= 1."
        ),
        MATCHES_BRONZE: (
            "Per hour this run wrote: silver rows = distinct bronze event_ids (at the bronze "
            "version read)."
        ),
        COMPLETE_VS_LEDGER: (
            "Per minute of the hours this run wrote: the producer ledger's event count = "
            "silver's (when a ledger exists). WARN: Kafka lag makes it short for a while."
        ),
        EVENTS_BEFORE_PARTITIONS_START: (
            "Counts valid events older than TIDELAKE_PARTITIONS_START: in silver and gold, but "
            "in no Dagster partition (WARN)."
        ),
    }
    return [
        dg.AssetCheckSpec(name, asset=key, blocking=name in BLOCKING, description=text)
        for name, text in descriptions.items()
    ]


def read_hours(
    lake: Lake, path: str, hours: Sequence[str], columns: list[str] | None = None
) -> pl.DataFrame | None:
    """The rows of exactly the hour partitions ``hours`` of a table (None: no such table)."""
    return read_table_hours(lake.open(path), hours, columns)


def read_table_hours(
    table: DeltaTable | None, hours: Sequence[str], columns: list[str] | None = None
) -> pl.DataFrame | None:
    """The rows of exactly the hour partitions ``hours`` of ``table`` at its loaded version."""
    if table is None:
        return None
    rows = read_partitions(table, hours) if hours else table.schema().to_arrow().empty_table()
    frame = pl.DataFrame(pyarrow.table(rows))
    return frame.select(columns) if columns else frame


def silver_dataframe_schema(contract: TopicContract) -> pa.DataFrameSchema:
    """The pandera schema of ``silver/<table>``: bronze's (from the contract), strict, plus
    ``_deliveries`` (int32, >= 1)."""
    schema = bronze_dataframe_schema(contract).add_columns(
        {"_deliveries": pa.Column(pl.Int32, checks=[pa.Check.ge(1)], nullable=False)}
    )
    return schema.set_name(contract.silver_path)


def check_schema(contract: TopicContract, rows: pl.DataFrame) -> CheckOutcome:
    """``rows`` pass :func:`silver_dataframe_schema`."""
    meta: dict[str, Any] = {"rows_validated": rows.height}
    return validation_outcome(silver_dataframe_schema(contract), rows, meta, "the silver schema")


def per_hour_counts(rows: pl.DataFrame, distinct: bool) -> dict[str, int]:
    """Rows (or distinct event_ids) per hour partition key."""
    if rows.is_empty():
        return {}
    agg = pl.col("event_id").n_unique() if distinct else pl.len()
    grouped = rows.group_by("event_date", "event_hour").agg(agg.alias("n"))
    return {
        f"{d.isoformat()}-{int(h):02d}:00": int(n)
        for d, h, n in grouped.select("event_date", "event_hour", "n").iter_rows()
    }


def check_matches_bronze(
    lake: Lake,
    contract: TopicContract,
    hours: Sequence[str],
    silver: pl.DataFrame,
    bronze_version: int | None,
) -> CheckOutcome:
    """Per hour in ``hours``: silver rows = distinct bronze event_ids at ``bronze_version``."""
    table = lake.open(contract.bronze_path, version=bronze_version)
    bronze = read_table_hours(table, hours, ["event_id", "event_date", "event_hour"])
    expected = per_hour_counts(bronze, distinct=True) if bronze is not None else {}
    actual = per_hour_counts(silver, distinct=False)
    wrong = {
        h: {"silver": actual.get(h, 0), "bronze_event_ids": expected.get(h, 0)}
        for h in hours
        if actual.get(h, 0) != expected.get(h, 0)
    }
    meta: dict[str, Any] = {
        "hours_checked": len(hours),
        "silver_rows": silver.height,
        "bronze_event_ids": sum(expected.values()),
        "bronze_version": -1 if bronze_version is None else bronze_version,
    }
    if wrong:
        meta["mismatched_hours"] = dict(sorted(wrong.items())[:MAX_LISTED])
        return CheckOutcome(
            False, f"{count(len(wrong), 'hour')} where silver != distinct bronze event_ids", meta
        )
    return CheckOutcome(True, f"{len(hours)} hour(s): silver = distinct bronze event_ids", meta)


def per_hour(
    lake: Lake,
    contract: TopicContract,
    hours: Sequence[str],
    check: Callable[[Lake, TopicContract, str], CheckOutcome],
    what: str,
) -> CheckOutcome:
    """A per-hour check of :mod:`tidelake.quality.completeness` over ``hours``, combined: passes
    when every hour passes; the failed hours' descriptions and figures are listed."""
    failed: dict[str, str] = {}
    details: dict[str, Any] = {}
    for hour in hours:
        outcome = check(lake, contract, hour)
        if not outcome.passed:
            failed[hour] = outcome.description
            details[hour] = outcome.metadata
    meta: dict[str, Any] = {"hours_checked": len(hours), "hours_failed": len(failed)}
    if failed:
        meta["failed_hours"] = dict(sorted(failed.items())[:MAX_LISTED])
        meta["failed_details"] = dict(sorted(details.items())[:MAX_LISTED])
        first = min(failed)
        return CheckOutcome(
            False, f"{count(len(failed), 'hour')} failed, first: {failed[first]}", meta
        )
    return CheckOutcome(True, f"{count(len(hours), 'hour')}: {what}", meta)


def check_before_start(lake: Lake, contract: TopicContract, partitions_start: str) -> CheckOutcome:
    """Counts silver rows older than ``partitions_start`` (always passes; WARN when some exist)."""
    start_key = f"{partitions_start}-00:00"
    before = {k: n for k, n in hour_row_counts(lake, contract.silver_path).items() if k < start_key}
    events = sum(before.values())
    meta: dict[str, Any] = {
        "events": events,
        "hours": len(before),
        "partitions_start": partitions_start,
    }
    if events:
        meta["oldest_hour"] = min(before)
        return CheckOutcome(
            False,
            f"{events} events before TIDELAKE_PARTITIONS_START ({partitions_start}) are in "
            "silver but have no partition",
            meta,
        )
    return CheckOutcome(
        True, f"no event before TIDELAKE_PARTITIONS_START ({partitions_start})", meta
    )


def run_silver_checks(
    lake: Lake,
    contract: TopicContract,
    hours: Sequence[str],
    bronze_version: int | None,
    partitions_start: str,
    names: Collection[str] | None = None,
) -> dict[str, CheckOutcome]:
    """The silver checks (``names``; None: every one) over the hours a refresh wrote, by name."""
    wanted = set(SILVER_CHECK_NAMES if names is None else names)
    out: dict[str, CheckOutcome] = {}
    if wanted & {PANDERA_SCHEMA, MATCHES_BRONZE}:
        rows = read_hours(lake, contract.silver_path, hours)
        if PANDERA_SCHEMA in wanted:
            out[PANDERA_SCHEMA] = (
                check_schema(contract, rows)
                if rows is not None
                else CheckOutcome(True, "silver table does not exist yet", {"rows_validated": 0})
            )
        if MATCHES_BRONZE in wanted:
            if rows is None:
                rows = pl.DataFrame(schema={"event_id": pl.String})
            out[MATCHES_BRONZE] = check_matches_bronze(lake, contract, hours, rows, bronze_version)
    if EVENT_ID_UNIQUE in wanted:
        out[EVENT_ID_UNIQUE] = per_hour(lake, contract, hours, silver_unique, "every event_id once")
    if COMPLETE_VS_LEDGER in wanted:
        out[COMPLETE_VS_LEDGER] = per_hour(
            lake, contract, hours, silver_completeness, "silver = the producer ledger per minute"
        )
    if EVENTS_BEFORE_PARTITIONS_START in wanted:
        out[EVENTS_BEFORE_PARTITIONS_START] = check_before_start(lake, contract, partitions_start)
    return {name: out[name] for name in SILVER_CHECK_NAMES if name in out}


def check_result(name: str, outcome: CheckOutcome) -> dg.AssetCheckResult:
    """The Dagster result of one silver check (ERROR for blocking checks, else WARN)."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=outcome.passed,
        description=outcome.description,
        metadata=outcome.metadata,
        severity=dg.AssetCheckSeverity.ERROR if name in BLOCKING else dg.AssetCheckSeverity.WARN,
    )
