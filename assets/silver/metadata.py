"""Materialization metadata of a derived (silver or gold) refresh, per run and per hour partition.

A range run of a single-run-backfill asset records one materialization per partition of the
range, but a refresh rewrites only the stale hours in it. So every partition's event carries its
own figures (``context.add_asset_metadata(..., partition_key=...)``):

* ``status``: ``rewritten`` (the refresh wrote this hour) or ``unchanged`` (it was not stale; its
  data and its figures are those of the last ``rewritten`` materialization of the hour);
* ``rows`` / ``dagster/row_count``: the hour's rows in the output after the run (for unchanged
  hours read from the Delta log's file statistics, no data read);
* for rewritten hours, the refresh's per-hour figures (:attr:`HourResult.details`, e.g. silver's
  ``duplicates_removed``, ``late``, ``bronze_rows``, ``bronze_event_ids``).

The run's figures (the same on every partition of the run): ``hours_written``, ``rows_written``,
``hours_written_outside_partitions`` (hours before ``TIDELAKE_PARTITIONS_START`` or past the open
hour, refreshed with the run but with no partition of their own), ``delta_version`` (-1: nothing
written), ``input_versions``, ``complete`` (no stale hour left, the watermark advanced), and
``total_<detail>`` sums of the per-hour figures. Runs of more than :data:`PER_PARTITION_LIMIT`
partitions (backfills) carry only these.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date
from typing import Any

import pyarrow as pa

from tidelake.ingest.positions import hour_partition_key
from tidelake.lake import Lake
from tidelake.layers import RefreshResult

REWRITTEN = "rewritten"
UNCHANGED = "unchanged"
PER_PARTITION_LIMIT = 168
"""Runs of at most this many partitions (a week of hours) get per-partition figures. Why a cap:
Dagster validates each per-partition metadata call against the run's whole key range (O(range)),
so a backfill of months would spend minutes on bookkeeping; such runs carry the run's figures."""


def hour_row_counts(lake: Lake, path: str) -> dict[str, int]:
    """Rows per hour partition key of a table partitioned by event_date/event_hour, from the
    Delta log's per-file ``num_records`` (reads no data file); ``{}`` if the table is missing."""
    table = lake.open(path)
    if table is None:
        return {}
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return {}
    counts: dict[str, int] = {}
    for day, hour, n in zip(
        actions.column("partition.event_date").to_pylist(),
        actions.column("partition.event_hour").to_pylist(),
        actions.column("num_records").to_pylist(),
        strict=True,
    ):
        when = day if isinstance(day, date) else date.fromisoformat(str(day))
        key = hour_partition_key(when, int(hour))
        counts[key] = counts.get(key, 0) + int(n or 0)
    return counts


def run_metadata(result: RefreshResult, partition_keys: Collection[str]) -> dict[str, Any]:
    """The run's figures, shared by every partition of the run (see the module docstring)."""
    totals: dict[str, int] = {}
    for hour in result.hours:
        for name, value in hour.details.items():
            totals[f"total_{name}"] = totals.get(f"total_{name}", 0) + int(value)
    keys = set(partition_keys)
    return {
        "hours_written": len(result.hours),
        "rows_written": result.rows,
        "hours_written_outside_partitions": sum(1 for h in result.hours if h.hour not in keys),
        "delta_version": -1 if result.version is None else result.version,
        "input_versions": dict(sorted(result.input_versions.items())),
        "complete": result.complete,
        **totals,
    }


def partition_metadata(
    result: RefreshResult, partition_keys: Sequence[str], current_rows: Mapping[str, int]
) -> dict[str, dict[str, Any]]:
    """Per partition key of the run: its status, rows and (rewritten hours) per-hour figures;
    empty for a run of more than :data:`PER_PARTITION_LIMIT` partitions.

    ``current_rows`` holds the output's rows per hour (:func:`hour_row_counts`); it is read only
    for hours the refresh did not write.
    """
    if len(partition_keys) > PER_PARTITION_LIMIT:
        return {}
    written = {h.hour: h for h in result.hours}
    out: dict[str, dict[str, Any]] = {}
    for key in partition_keys:
        hour = written.get(key)
        if hour is None:
            rows = int(current_rows.get(key, 0))
            out[key] = {"status": UNCHANGED, "rows": rows, "dagster/row_count": rows}
        else:
            out[key] = {
                "status": REWRITTEN,
                "rows": hour.rows,
                "dagster/row_count": hour.rows,
                **{name: int(v) for name, v in sorted(hour.details.items())},
            }
    return out


def needs_row_counts(result: RefreshResult, partition_keys: Collection[str]) -> bool:
    """Whether per-partition figures are recorded and some partition of the run was not
    rewritten (its rows then come from the log)."""
    if len(partition_keys) > PER_PARTITION_LIMIT:
        return False
    written = {h.hour for h in result.hours}
    return any(key not in written for key in partition_keys)


def record_refresh(context: Any, lake: Lake, result: RefreshResult) -> list[str]:
    """Log a refresh in its asset's run and record each partition's figures (``context`` is the
    ``dg.AssetExecutionContext``); returns the run's partition keys."""
    keys = list(context.partition_keys)
    context.log.info(describe(result, keys))
    current = hour_row_counts(lake, result.output) if needs_row_counts(result, keys) else {}
    for partition, metadata in partition_metadata(result, keys, current).items():
        context.add_asset_metadata(metadata, partition_key=partition)
    return keys


def describe(result: RefreshResult, partition_keys: Collection[str]) -> str:
    """One line for the run log: what was rewritten out of what was requested."""
    state = "complete" if result.complete else "stale hours remain"
    return (
        f"{result.output}: rewrote {len(result.hours)} of {len(partition_keys)} requested hour(s) "
        f"({result.rows} rows, version {result.version}); {state}"
    )
