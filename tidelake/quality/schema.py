"""The contract-schema check of a bronze table: the pandera schema generated from the topic's
contract (:func:`bronze_dataframe_schema`) and :func:`check_bronze_schema`, which validates the
table's columns (from the Delta schema) and its rows (one batch's, or all of them: the audit)."""

from __future__ import annotations

from typing import Any

import pandera.errors
import pandera.polars as pa
import polars as pl
import pyarrow
from deltalake import DeltaTable

from tidelake import contracts
from tidelake.contracts import TopicContract
from tidelake.lake import Lake
from tidelake.quality.offsets import OffsetWindow, window_filter
from tidelake.quality.outcome import MAX_LISTED, CheckOutcome

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
"""What an ``event_id`` must look like: a UUID in canonical 8-4-4-4-12 hex form."""

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "timestamp": pl.Datetime("us", "UTC"),
}
"""Polars dtype of each contract field kind, as bronze stores it."""


def meta_column_types() -> dict[str, tuple[pl.DataType, bool]]:
    """Polars dtype and nullability of each bronze metadata column.

    Derived from :data:`tidelake.contracts.BRONZE_META_FIELDS` when called, so a column added to
    the contract reaches the schema check without an edit here.
    """
    fields = list(contracts.BRONZE_META_FIELDS)
    dtypes = pl.DataFrame(pyarrow.schema(fields).empty_table()).schema
    return {f.name: (dtypes[f.name], f.nullable) for f in fields}


def _scan(table: DeltaTable, lake: Lake) -> pl.LazyFrame:
    return pl.scan_delta(table, storage_options=lake.storage_options or None)


def bronze_dataframe_schema(contract: TopicContract) -> pa.DataFrameSchema:
    """The pandera schema of ``bronze/<table>``, generated from the contract.

    Rules: every contract field and bronze metadata column is present with its bronze dtype;
    non-nullable fields have no nulls; ``event_id`` is a UUID; ``event_type`` is one the topic
    allows; ``non_negative`` fields are >= 0 and ``positive`` fields > 0; ``event_hour`` is 0-23.
    No other columns are allowed.
    """
    columns: dict[str, pa.Column] = {}
    for f in contract.all_fields:
        checks: list[pa.Check] = []
        if f.name == "event_id":
            checks.append(pa.Check.str_matches(UUID_PATTERN))
        if f.name == "event_type":
            checks.append(pa.Check.isin(sorted(contract.event_types)))
        if f.name in contract.non_negative:
            checks.append(pa.Check.ge(0))
        if f.name in contract.positive:
            checks.append(pa.Check.gt(0))
        columns[f.name] = pa.Column(
            POLARS_TYPES[f.kind], checks=checks, nullable=f.nullable, description=f.doc or None
        )
    for name, (dtype, nullable) in meta_column_types().items():
        checks = [pa.Check.in_range(0, 23)] if name == "event_hour" else []
        columns[name] = pa.Column(dtype, checks=checks, nullable=nullable)
    return pa.DataFrameSchema(columns, strict=True, name=f"bronze/{contract.table_name}")


def check_bronze_schema(
    lake: Lake, contract: TopicContract, window: OffsetWindow | None = None
) -> CheckOutcome:
    """Validate ``bronze/<table>`` against :func:`bronze_dataframe_schema`.

    Column names and dtypes are checked for the whole table (from the Delta schema, no data read);
    the row rules run over the rows in ``window`` (``None``: every row).
    """
    table = lake.open(contract.bronze_path)
    if table is None:
        return CheckOutcome(True, "bronze table does not exist yet", {"rows_validated": 0})
    schema = bronze_dataframe_schema(contract)
    lazy = _scan(table, lake)
    if window is not None and not window:
        rows = lazy.head(0).collect()
    else:
        rows = (lazy.filter(window_filter(window)) if window else lazy).collect()
    meta: dict[str, Any] = {
        "rows_validated": rows.height,
        "scope": "whole table" if window is None else "rows of this run",
        "table_version": table.version(),
    }
    return validation_outcome(schema, rows, meta, "the contract schema")


def validation_outcome(
    schema: Any, rows: pl.DataFrame, meta: dict[str, Any], what: str
) -> CheckOutcome:
    """Validate ``rows`` against a pandera ``schema``: the outcome names the failed checks and
    lists up to :data:`MAX_LISTED` failure cases in ``meta``."""
    try:
        schema.validate(rows, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        meta["failures"] = cases.height
        meta["failure_examples"] = [
            {k: (str(v) if v is not None else None) for k, v in row.items()}
            for row in cases.head(MAX_LISTED).to_dicts()
        ]
        checks = sorted({str(c) for c in cases["check"].to_list()})
        return CheckOutcome(False, f"{cases.height} schema failures: {', '.join(checks)}", meta)
    return CheckOutcome(True, f"{rows.height} rows match {what}", meta)
