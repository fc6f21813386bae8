"""Opening (and creating) the Delta tables the engine writes."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from tidelake.ingest.errors import IngestError
from tidelake.lake import Lake

log = logging.getLogger(__name__)


def ensure_table(
    lake: Lake,
    relative: str,
    schema: pa.Schema,
    partition_by: Sequence[str],
    description: str,
) -> DeltaTable:
    """Open a Delta table, creating it (empty, with schema and partitioning) if it is missing.

    Two processes may race to create it; the loser simply opens the winner's table.
    """
    table = lake.open(relative)
    if table is not None:
        return table
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
