"""``silver/<table>``: each logical event of a topic once, refreshed hour by hour from bronze.

One silver hour partition is a pure function of the same bronze hour partition
(:func:`tidelake.transform.silver.dedupe_first_delivery` applied to it): producer retries carry
the same ``event_time``, so every delivery of an event lands in one bronze hour. Refreshing an
hour therefore reads one bronze partition and rewrites one silver partition, however old.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import polars as pl
import pyarrow as pa

from tidelake.contracts import TopicContract
from tidelake.lake import Lake
from tidelake.layers.derive import Built, Derivation, refresh, stale_hours
from tidelake.layers.hours import key_of
from tidelake.layers.result import RefreshResult, StaleHours
from tidelake.settings import RefreshSettings
from tidelake.transform.silver import DELIVERIES, dedupe_first_delivery, late_expr
from tidelake.transform.windows import to_arrow

SILVER_DETAILS: tuple[str, ...] = ("bronze_rows", "bronze_event_ids", "duplicates_removed", "late")
"""``HourResult.details`` keys of a silver refresh."""


def silver_derivation(contract: TopicContract, late_after_seconds: float = 30.0) -> Derivation:
    """The derivation ``bronze/<table>`` → ``silver/<table>`` of one topic."""
    schema = contract.silver_schema()

    def build(inputs: Mapping[str, pa.Table], keys: Sequence[str]) -> Built:
        bronze = inputs.get(contract.bronze_path)
        return build_silver(bronze, schema, keys, late_after_seconds)

    return Derivation(
        output=contract.silver_path,
        inputs=(contract.bronze_path,),
        schema=schema,
        description=f"{contract.name}: each logical event once (first delivery wins).",
        build=build,
    )


def build_silver(
    bronze: pa.Table | None, schema: pa.Schema, keys: Sequence[str], late_after_seconds: float
) -> Built:
    """Silver rows and per-hour details for the bronze rows of the hours ``keys``.

    Deduplication is per hour partition (see the module docstring), so the result of an hour
    never depends on which other hours are refreshed with it.
    """
    details = {k: dict.fromkeys(SILVER_DETAILS, 0) for k in keys}
    parts: list[pl.DataFrame] = []
    if bronze is not None and bronze.num_rows:
        frame = pl.DataFrame(_bronze_columns(bronze, schema))
        for (day, hour), rows in frame.partition_by(
            ["event_date", "event_hour"], as_dict=True, maintain_order=True
        ).items():
            silver, removed = dedupe_first_delivery(rows)
            late = int(silver.select(late_expr(late_after_seconds).sum()).item())
            details[key_of(day, int(hour))] = {
                "bronze_rows": rows.height,
                "bronze_event_ids": silver.height,
                "duplicates_removed": removed,
                "late": late,
            }
            parts.append(silver)
    if not parts:
        return Built(rows=schema.empty_table(), details=details)
    return Built(rows=to_arrow(pl.concat(parts), schema), details=details)


def _bronze_columns(bronze: pa.Table, schema: pa.Schema) -> pa.Table:
    """Bronze columns in contract order; contract columns the table lacks read as NULL."""
    names = [n for n in schema.names if n != DELIVERIES]
    for name in names:
        if name not in bronze.column_names:
            bronze = bronze.append_column(name, pa.nulls(bronze.num_rows, schema.field(name).type))
    return bronze.select(names)


def stale_silver_hours(lake: Lake, contract: TopicContract) -> StaleHours:
    """Hours of ``silver/<table>`` whose bronze hours changed since silver's watermark."""
    return stale_hours(lake, silver_derivation(contract))


def refresh_silver(
    lake: Lake,
    contract: TopicContract,
    hours: Collection[str] | None = None,
    *,
    settings: RefreshSettings,
    now: datetime | None = None,
    max_hours: int | None = None,
) -> RefreshResult:
    """Recompute the stale hours of ``silver/<table>`` from bronze, in one Delta commit.

    ``hours`` narrows the stale hours refreshed (plus those outside the partition space); see
    :func:`tidelake.layers.derive.refresh`. Details per hour: ``bronze_rows``,
    ``bronze_event_ids``, ``duplicates_removed``, ``late``.
    """
    derivation = silver_derivation(contract, settings.late_after_seconds)
    return refresh(lake, derivation, hours, settings, now, max_hours)


__all__ = [
    "SILVER_DETAILS",
    "build_silver",
    "refresh_silver",
    "silver_derivation",
    "stale_silver_hours",
]
