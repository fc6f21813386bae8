"""Coordinates and positions for quarantine replay: which rows are eligible, which are held.

A record is addressed by its Kafka coordinate ``(_partition, _offset)`` within its topic. These
helpers read bronze's stored positions (:class:`Positions`, which bound what is eligible: rows at
or past them are in flight), scan one topic's quarantine rows, find which coordinates bronze
already holds (:func:`bronze_holding`), and filter, deduplicate and summarise sets of coordinates.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable

from tidelake.ingest.positions import app_id, hour_partition_key
from tidelake.ingest.replay_result import TopicReplay
from tidelake.lake import Lake

COORDS = ["_partition", "_offset"]
"""The columns that address a record within its topic."""


class Positions:
    """Bronze's stored position per partition of one topic, read once per partition."""

    def __init__(self, bronze: DeltaTable, group: str, topic: str) -> None:
        self.bronze = bronze
        self.group = group
        self.topic = topic
        self._cache: dict[int, int | None] = {}

    def of(self, partition: int) -> int | None:
        if partition not in self._cache:
            self._cache[partition] = self.bronze.transaction_version(
                app_id(self.group, self.topic, partition)
            )
        return self._cache[partition]

    def eligible(self, batch: pa.RecordBatch, out: TopicReplay) -> pa.RecordBatch:
        """Rows below their partition's position; the others are counted as in flight."""
        parts = batch.column("_partition").to_numpy()
        offs = batch.column("_offset").to_numpy()
        limit = np.empty(len(parts), dtype=np.int64)
        for p in np.unique(parts).tolist():
            pos = self.of(int(p))
            limit[parts == p] = -1 if pos is None else pos
        keep = offs < limit
        out.in_flight += int(len(keep) - keep.sum())
        return batch if keep.all() else batch.filter(pa.array(keep))


def topic_dataset(table: DeltaTable, topic: str) -> ds.Dataset:
    """The quarantine files of one topic (its Delta partition), at the table's version."""
    return table.to_pyarrow_dataset(file_pruning_predicate=[("_topic", "=", topic)])


def rows_of(topic: str, reason: str | None = None) -> ds.Expression:
    """Quarantine rows of ``topic`` (with ``reason``, if given)."""
    expr = ds.field("_topic") == topic
    return expr & (ds.field("error") == reason) if reason else expr


def count_rows(quarantine: DeltaTable, topic: str, reason: str | None) -> int:
    return int(topic_dataset(quarantine, topic).count_rows(filter=rows_of(topic, reason)))


def coords_frame(table: pa.Table) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "_partition": table.column("_partition").to_numpy().astype(np.int32),
            "_offset": table.column("_offset").to_numpy().astype(np.int64),
        }
    )


def bronze_holding(
    lake: Lake, bronze: DeltaTable, topic: str, coords: pl.DataFrame
) -> pl.DataFrame:
    """The coordinates among ``coords`` that bronze holds for ``topic``.

    Reads only bronze's coordinate columns, within each partition's offset range of ``coords``
    (pruned by file statistics), at bronze's loaded version.
    """
    coords = coords.select(pl.col("_partition").cast(pl.Int32), pl.col("_offset").cast(pl.Int64))
    if not coords.height:
        return coords
    bounds = coords.group_by("_partition").agg(
        pl.col("_offset").min().alias("lo"), pl.col("_offset").max().alias("hi")
    )
    in_range = pl.lit(False)
    for p, lo, hi in bounds.iter_rows():
        in_range = in_range | ((pl.col("_partition") == p) & pl.col("_offset").is_between(lo, hi))
    return (
        pl.scan_delta(bronze, storage_options=lake.storage_options or None)
        .filter((pl.col("_topic") == topic) & in_range)
        .select(pl.col("_partition").cast(pl.Int32), pl.col("_offset").cast(pl.Int64))
        .join(coords.lazy(), on=COORDS, how="semi")
        .unique()
        .collect()
    )


def member(table: pa.Table, coords: pl.DataFrame) -> npt.NDArray[np.bool_]:
    """Per row of ``table``, whether its ``(_partition, _offset)`` is in ``coords``."""
    mask = np.zeros(table.num_rows, dtype=bool)
    if not coords.height or not table.num_rows:
        return mask
    hits = (
        coords_frame(table)
        .with_row_index("row")
        .join(
            coords.select(pl.col("_partition").cast(pl.Int32), pl.col("_offset").cast(pl.Int64)),
            on=COORDS,
            how="semi",
        )
        .get_column("row")
        .to_numpy()
    )
    mask[hits] = True
    return mask


def without(table: pa.Table, coords: pl.DataFrame) -> pa.Table:
    """``table`` without the rows at ``coords``."""
    drop = member(table, coords)
    return table.filter(pa.array(~drop)) if drop.any() else table


def first_per_coordinate(table: pa.Table) -> pa.Table:
    """``table`` keeping the first row of each coordinate (quarantine should hold each once)."""
    if table.num_rows < 2:
        return table
    first = coords_frame(table).select(pl.struct(COORDS).is_first_distinct()).to_series()
    return table if first.all() else table.filter(pa.array(first.to_numpy()))


def offset_bounds(rows: pa.Table) -> dict[str, list[int]]:
    """Partition → ``[lowest, highest]`` offset of ``rows`` (for the commit annotation)."""
    frame = (
        coords_frame(rows)
        .group_by("_partition")
        .agg(pl.col("_offset").min().alias("lo"), pl.col("_offset").max().alias("hi"))
    )
    return {str(p): [int(lo), int(hi)] for p, lo, hi in sorted(frame.iter_rows())}


def hour_keys(rows: pa.Table) -> set[str]:
    """Dagster hourly partition keys of the ``event_date``/``event_hour`` of ``rows``."""
    if not rows.num_rows:
        return set()
    hours = rows.select(["event_date", "event_hour"]).group_by(["event_date", "event_hour"])
    agg = hours.aggregate([])
    return {
        hour_partition_key(d, h)
        for d, h in zip(
            agg.column("event_date").to_pylist(), agg.column("event_hour").to_pylist(), strict=True
        )
    }


__all__ = [
    "COORDS",
    "Positions",
    "bronze_holding",
    "coords_frame",
    "count_rows",
    "first_per_coordinate",
    "hour_keys",
    "member",
    "offset_bounds",
    "rows_of",
    "topic_dataset",
    "without",
]
