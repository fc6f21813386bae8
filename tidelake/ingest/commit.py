"""The commit protocol: quarantine first, bronze second, each carrying the txn offsets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, Transaction

from tidelake.ingest.decode import DecodedChunk

log = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 20


@dataclass
class OpenChunk:
    """Decoded pieces waiting to be committed together, and the next offset per partition."""

    valid: list[pa.Table] = field(default_factory=list)
    invalid: list[pa.Table] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)

    def add(self, decoded: DecodedChunk) -> None:
        self.valid.append(decoded.valid)
        self.invalid.append(decoded.invalid)

    def take(self) -> tuple[DecodedChunk, dict[int, int]]:
        decoded = DecodedChunk(
            valid=pa.concat_tables(self.valid), invalid=pa.concat_tables(self.invalid)
        )
        ends = self.ends
        self.valid, self.invalid, self.ends = [], [], {}
        return decoded, ends


def unwritten(
    table: DeltaTable, rows: pa.Table, ids: Mapping[int, str], ends: Mapping[int, int]
) -> tuple[pa.Table, list[Transaction]]:
    """What to append to ``table``: the rows it does not hold yet, and the txns that advance it.

    The table's log is re-read first, because another writer may have committed since our
    snapshot, and deltalake accepts a lower txn version silently: a partition whose stored
    version is already at or past ``ends[p]`` gets no txn, so its position never moves back.
    """
    table.update_incremental()
    done = {p: table.transaction_version(ids[p]) for p in ends}
    txns = [
        Transaction(ids[p], end)
        for p, end in ends.items()
        if (stored := done[p]) is None or end > stored
    ]
    return unseen(rows, done), txns


def unseen(table: pa.Table, done: Mapping[int, int | None]) -> pa.Table:
    """Rows whose offset is at or above the stored txn version of their partition.

    This is the rule that makes replays and racing writers safe: a Delta table never takes a
    record below its own stored position for that partition.
    """
    if not table.num_rows or all(v is None for v in done.values()):
        return table
    parts = table.column("_partition").to_numpy()
    offsets = table.column("_offset").to_numpy()
    keep = np.ones(len(parts), dtype=bool)
    for p, v in done.items():
        if v is not None:
            keep &= ~((parts == p) & (offsets < v))
    return table if keep.all() else table.filter(pa.array(keep))
