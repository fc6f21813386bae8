"""Opening (and creating) the Delta tables the engine writes."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pyarrow as pa
from deltalake import DeltaTable
from deltalake import Field as DeltaField
from deltalake.exceptions import DeltaError

from tidelake.ingest.errors import IngestError
from tidelake.lake import Lake

log = logging.getLogger(__name__)

MIGRATE_ATTEMPTS = 3
"""Tries at adding missing columns; a concurrent commit makes one attempt fail harmlessly."""


def ensure_table(
    lake: Lake,
    relative: str,
    schema: pa.Schema,
    partition_by: Sequence[str],
    description: str,
) -> DeltaTable:
    """Open a Delta table, creating it (empty, with schema and partitioning) if it is missing.

    Two processes may race to create it; the loser simply opens the winner's table. An existing
    table that lacks columns of ``schema`` (created by an older release) gets them added first,
    see :func:`add_missing_columns`.
    """
    table = lake.open(relative)
    if table is not None:
        return add_missing_columns(table, schema, lake.uri(relative))
    try:
        DeltaTable.create(
            lake.uri(relative),
            schema=schema,
            partition_by=list(partition_by),
            mode="ignore",
            name=relative.replace("/", "_"),
            description=description,
            storage_options=lake.storage_options,
        )
    except DeltaError as exc:  # lost a creation race: the table exists now
        log.info("create %s raced (%s); opening it", relative, exc)
    for _ in range(20):
        table = lake.open(relative)
        if table is not None:
            return table
        time.sleep(0.1)
    raise IngestError(f"could not create or open Delta table {lake.uri(relative)}")


def add_missing_columns(table: DeltaTable, schema: pa.Schema, uri: str = "") -> DeltaTable:
    """Add the columns of ``schema`` that ``table`` lacks, so writes with ``schema`` succeed.

    Rule: a column is added only if ``schema`` declares it nullable, because the rows already in
    the table read back NULL in it. (deltalake 1.6 accepts a non-nullable column here, and then
    reads NULLs into a "not null" Arrow column, so this is checked rather than left to it.)
    Existing columns are left as they are: changing a type is not a migration this does.
    A concurrent commit (another writer migrating or appending) makes an attempt fail; the log
    is re-read and the attempt repeated for what is still missing.

    Args:
        table: the open table; it is updated in place and returned.
        schema: the Arrow schema the engine is about to write.
        uri: the table's location, for messages.

    Raises:
        IngestError: a missing column is not nullable, or adding the columns failed.
    """
    missing = _missing(table, schema)
    if not missing:
        return table
    required = [f.name for f in missing if not f.nullable]
    if required:
        raise IngestError(
            f"Delta table {uri} lacks the non-nullable column(s) {', '.join(required)}: existing "
            f"rows would hold NULL there. Declare them nullable in tidelake.contracts."
        )
    error: DeltaError | None = None
    for _ in range(MIGRATE_ATTEMPTS):
        names = ", ".join(f.name for f in missing)
        log.info("%s: adding column(s) %s (nullable; existing rows read NULL)", uri, names)
        try:
            table.alter.add_columns([DeltaField.from_arrow(f) for f in missing])
        except DeltaError as exc:  # another writer committed (or migrated) first: re-read
            log.info("adding %s to %s failed (%s); re-reading the log", names, uri, exc)
            error = exc
        table.update_incremental()
        missing = _missing(table, schema)
        if not missing:
            return table
    raise IngestError(
        f"could not add column(s) {', '.join(f.name for f in missing)} to Delta table {uri}: "
        f"{error}"
    )


def _missing(table: DeltaTable, schema: pa.Schema) -> list[pa.Field]:
    have = {f.name for f in table.schema().fields}
    return [f for f in schema if f.name not in have]
