"""dbt-duckdb plugin: a source is a lake Delta table, read through ``deltalake`` as Arrow.

Why not dbt-duckdb's built-in ``delta`` plugin: it needs absolute table URIs and storage options in
the source definitions, and it fails on a table that does not exist yet. This one

* resolves ``meta.delta_path`` (``silver/shop_clicks``) below the plugin's ``lake_uri`` with
  :class:`tidelake.lake.Lake`, so local paths and ``s3://`` work with the same storage options as
  every other lake reader (``AWS_*`` variables, ``conditional_put``); secrets never reach dbt's
  files, logs or manifest;
* yields an empty relation with the table's declared schema when the table does not exist yet
  (a topic without data), so the build never breaks on it. The schema is the silver contract of
  ``meta.topic`` (bronze columns + ``_deliveries``) or the ``meta.empty_schema`` mapping
  (column → DuckDB type) for gold tables;
* reads only the build's day window (``min_date``/``max_date`` in the plugin config, from the
  dbt vars of the same name): the ``pyarrow.dataset`` is filtered on the ``event_date`` partition
  column, so a windowed build opens only the files of its days.

Each source is copied into a scratch DuckDB table (``lake_silver.<table>``), streamed from the
dataset. Not a view: dbt-duckdb re-registers the Arrow datasets of views on every new cursor,
which races between dbt threads ("dictionary changed size during iteration"), and a view would
outlive the dataset it names. ``on-run-end`` drops the scratch schemas (``drop_lake_schemas``),
so the warehouse file keeps only models.
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig

from tidelake.contracts import TOPICS
from tidelake.lake import Lake
from tidelake.settings import LakeSettings

_DUCKDB_TO_ARROW: dict[str, pa.DataType] = {
    "varchar": pa.string(),
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def silver_schema(topic: str) -> pa.Schema:
    """Arrow schema of ``silver/<table>`` of a logical topic: bronze columns + ``_deliveries``."""
    return TOPICS[topic].silver_schema()


def declared_schema(columns: dict[str, str]) -> pa.Schema:
    """Arrow schema from a ``column → DuckDB type`` mapping (``meta.empty_schema``)."""
    try:
        return pa.schema([(name, _DUCKDB_TO_ARROW[t.lower()]) for name, t in columns.items()])
    except KeyError as exc:
        known = sorted(_DUCKDB_TO_ARROW)
        raise ValueError(f"empty_schema type {exc} unknown; use one of {known}") from None


def empty_relation(meta: dict[str, Any]) -> pa.Table:
    """The zero-row table a missing source stands for."""
    if "topic" in meta:
        return silver_schema(meta["topic"]).empty_table()
    if "empty_schema" in meta:
        return declared_schema(meta["empty_schema"]).empty_table()
    raise ValueError("a tidelake_delta source needs meta.topic or meta.empty_schema")


def window_date(value: Any) -> date | None:
    """A window bound from the plugin config: ``YYYY-MM-DD``, or None when unset."""
    text = "" if value is None else str(value).strip()
    if text in ("", "None", "none", "null"):
        return None
    return date.fromisoformat(text)


def in_window(dataset: pads.Dataset, lo: date | None, hi: date | None) -> pads.Dataset:
    """The rows of ``dataset`` whose ``event_date`` lies in ``[lo, hi]`` (no bound: all rows)."""
    if lo is None and hi is None:
        return dataset
    lo, hi = lo or hi, hi or lo
    day = pads.field("event_date")
    return dataset.filter((day >= lo) & (day <= hi))


class Plugin(BasePlugin):
    """Loads ``meta.delta_path`` below ``lake_uri``, restricted to the day window of its config."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        uri = str(plugin_config.get("lake_uri") or "").strip()
        if not uri:
            raise ValueError("tidelake_delta needs config.lake_uri (LAKE_URI)")
        # Same variables, same rules as the rest of Tidelake (S3 endpoint, credentials, ...).
        self.lake = Lake.from_settings(LakeSettings.from_env({**os.environ, "LAKE_URI": uri}))
        self.min_date = window_date(plugin_config.get("min_date"))
        self.max_date = window_date(plugin_config.get("max_date"))

    def load(self, source_config: SourceConfig) -> Any:
        path = source_config.get("delta_path")
        if not path:
            raise ValueError(f"source {source_config.name} has no meta.delta_path")
        table = self.lake.open(str(path))
        if table is None:
            return empty_relation(source_config.meta)
        return in_window(table.to_pyarrow_dataset(), self.min_date, self.max_date)

    def default_materialization(self) -> str:
        return "table"
