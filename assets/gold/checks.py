"""Asset checks of ``gold/events_per_minute``, over exactly the hours a run wrote.

* ``events_match_silver`` (ERROR, blocking): per (topic, minute), ``sum(events)`` over event
  types = the silver rows of that minute, read at the silver versions the refresh read; the
  hourly table is built from the per-minute one, so it must not build on a wrong minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl

from assets.silver.checks import read_hours, read_table_hours
from tidelake.contracts import TopicContract
from tidelake.lake import Lake
from tidelake.layers.gold import EVENTS_PER_MINUTE_PATH
from tidelake.quality.outcome import MAX_LISTED, CheckOutcome, count

EVENTS_MATCH_SILVER = "events_match_silver"


def gold_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            EVENTS_MATCH_SILVER,
            asset=key,
            blocking=True,
            description=(
                "Per topic and minute of the hours this run wrote: events (all event types) = "
                "silver rows of that minute."
            ),
        )
    ]


def _minute_counts(frame: pl.DataFrame, value: pl.Expr) -> dict[tuple[str, Any], int]:
    if frame.is_empty():
        return {}
    grouped = frame.group_by("topic", "minute").agg(value.alias("n"))
    return {(t, m): int(n) for t, m, n in grouped.select("topic", "minute", "n").iter_rows()}


def check_events_match_silver(
    lake: Lake,
    contracts: Sequence[TopicContract],
    hours: Sequence[str],
    silver_versions: Mapping[str, int],
) -> CheckOutcome:
    """Per (topic, minute) in ``hours``: gold ``events`` = silver rows (module docstring)."""
    meta: dict[str, Any] = {"hours_checked": len(hours)}
    if not hours:
        return CheckOutcome(True, "no hour written", meta)
    gold_rows = read_hours(lake, EVENTS_PER_MINUTE_PATH, hours, ["topic", "window_start", "events"])
    gold = pl.DataFrame() if gold_rows is None else gold_rows.rename({"window_start": "minute"})
    frames = []
    for contract in contracts:
        table = lake.open(contract.silver_path, version=silver_versions.get(contract.silver_path))
        rows = read_table_hours(table, hours, ["event_time"])
        if rows is None:
            continue
        frames.append(
            rows.select(
                pl.lit(contract.name).alias("topic"),
                pl.col("event_time").dt.truncate("1m").alias("minute"),
            )
        )
    silver = pl.concat(frames) if frames else pl.DataFrame()
    expected = _minute_counts(silver, pl.len())
    actual = _minute_counts(gold, pl.col("events").sum())
    wrong = {
        f"{topic} {minute.isoformat()}": {"gold": actual.get(k, 0), "silver": expected.get(k, 0)}
        for k in sorted(set(expected) | set(actual), key=str)
        if actual.get(k, 0) != expected.get(k, 0)
        for topic, minute in [k]
    }
    meta |= {
        "minutes_checked": len(set(expected) | set(actual)),
        "gold_events": sum(actual.values()),
        "silver_rows": sum(expected.values()),
    }
    if wrong:
        meta["mismatched_minutes"] = dict(list(wrong.items())[:MAX_LISTED])
        return CheckOutcome(
            False, f"{count(len(wrong), 'minute')} where events != silver rows", meta
        )
    return CheckOutcome(True, f"{meta['minutes_checked']} minute(s): events = silver rows", meta)


def check_result(name: str, outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=outcome.passed,
        description=outcome.description,
        metadata=outcome.metadata,
        severity=dg.AssetCheckSeverity.ERROR,
    )
