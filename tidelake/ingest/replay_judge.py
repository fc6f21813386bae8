"""Judging quarantined rows by the current contract, each at its own original arrival time.

The validator (:class:`~tidelake.ingest.decode.ChunkDecoder`) has one rule that depends on the
ingestion time: ``absurd_timestamp`` (``event_time`` more than ``TIDELAKE_MAX_FUTURE_SECONDS``
after ingestion), and a later ingestion time accepts more. :func:`judge` decides each record at
its own original ``_ingested_at``, without one decoder query per distinct stamp (sparse quarantine
rows come from thousands of batches): a chunk is decoded at its earliest stamp, which settles
every row except those ``absurd`` there; those are decoded at their latest stamp, which settles
every row still ``absurd``; only the rows in between are decoded at their own stamp. The valid
rows keep their original ``_ingested_at`` (lateness is measured from it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from tidelake.contracts import QuarantineReason
from tidelake.ingest.decode import ChunkDecoder, RawChunk
from tidelake.ingest.errors import IngestError
from tidelake.ingest.replay_result import VALID

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ABSURD = QuarantineReason.ABSURD_TIMESTAMP.value


@dataclass
class Judged:
    """One chunk of quarantine rows judged by the current contract.

    Attributes:
        valid: rows that pass, with the bronze schema and each row's original ``_ingested_at``.
        valid_reasons: the original quarantine reason of each valid row (aligned with ``valid``).
        still_failing: ``(original reason, current reason)`` → rows of the others.
    """

    valid: pa.Table
    valid_reasons: npt.NDArray[np.object_]
    still_failing: Counter[tuple[str, str]]


class _Rows:
    """Quarantine rows as the decoder's inputs, addressable by row number."""

    def __init__(self, topic: str, rows: pa.Table) -> None:
        self.topic = topic
        self.n = rows.num_rows
        self.partitions = rows.column("_partition").to_numpy().astype(np.int32)
        self.offsets = rows.column("_offset").to_numpy().astype(np.int64)
        self.ingested = pc.cast(rows.column("_ingested_at"), pa.int64()).to_numpy()
        # Quarantine stores the Kafka timestamp in µs (ms x 1000), NULL for none (-1 in Kafka).
        stamps = pc.fill_null(pc.cast(rows.column("_kafka_timestamp"), pa.int64()), -1000)
        self.kafka_ms = stamps.to_numpy() // 1000
        self.keys: list[bytes | None] = rows.column("key").to_pylist()
        self.values: list[bytes | None] = rows.column("raw").to_pylist()
        self.reasons = np.array(rows.column("error").to_pylist(), dtype=object)
        pairs = zip(self.partitions.tolist(), self.offsets.tolist(), strict=True)
        self._row_of = {coord: i for i, coord in enumerate(pairs)}

    def rows_of(self, table: pa.Table) -> npt.NDArray[np.int64]:
        """Row numbers of the decoded rows in ``table``, found by their coordinates."""
        parts = table.column("_partition").to_pylist()
        offs = table.column("_offset").to_pylist()
        return np.array(
            [self._row_of[(p, o)] for p, o in zip(parts, offs, strict=True)], dtype=np.int64
        )

    def decode(
        self, decoder: ChunkDecoder, sel: npt.NDArray[np.int64], at_us: int
    ) -> tuple[npt.NDArray[np.object_], pa.Table, npt.NDArray[np.int64]]:
        """Decode rows ``sel`` as ingested at ``at_us``.

        Returns each row's outcome (``valid`` or a reason), the valid rows as decoded, and the
        row numbers of those valid rows.
        """
        raw = RawChunk(
            topic=self.topic,
            partitions=self.partitions[sel],
            offsets=self.offsets[sel],
            timestamps_ms=self.kafka_ms[sel],
            keys=[self.keys[i] for i in sel.tolist()],
            values=[self.values[i] for i in sel.tolist()],
        )
        decoded = decoder.decode(raw, _EPOCH + timedelta(microseconds=at_us))
        outcome = np.full(self.n, VALID, dtype=object)
        bad = self.rows_of(decoded.invalid)
        outcome[bad] = np.array(decoded.invalid.column("error").to_pylist(), dtype=object)
        good = self.rows_of(decoded.valid)
        if len(bad) + len(good) != len(sel) or not np.all(outcome[good] == VALID):
            raise IngestError(
                f"{self.topic}: the decoder returned {len(good)} valid and {len(bad)} invalid "
                f"rows for {len(sel)} records"
            )
        return outcome[sel], decoded.valid, good


def judge(decoder: ChunkDecoder, topic: str, rows: pa.Table) -> Judged:
    """Decode quarantine ``rows`` of ``topic`` (unique coordinates) as of each row's own arrival.

    Rule (see the module docstring): only ``absurd_timestamp`` depends on the ingestion time,
    and a later time accepts more. So a verdict at a time before the row's own is final unless it
    is ``absurd_timestamp``; ``absurd_timestamp`` at a time after the row's own is final; the
    row's own time settles everything.
    """
    src = _Rows(topic, rows)
    verdict = np.full(src.n, VALID, dtype=object)
    kept: list[tuple[pa.Table, npt.NDArray[np.int64]]] = []
    if src.n:
        everyone = np.arange(src.n, dtype=np.int64)
        lo = int(src.ingested.min())
        outcome, valid, good = src.decode(decoder, everyone, lo)
        verdict[everyone] = outcome
        kept.append((valid, good))
        open_rows = everyone[(outcome == _ABSURD) & (src.ingested != lo)]
        if open_rows.size:
            hi = int(src.ingested[open_rows].max())
            outcome, valid, good = src.decode(decoder, open_rows, hi)
            verdict[open_rows] = outcome
            settled = src.ingested[good] == hi
            kept.append((valid.filter(pa.array(settled)), good[settled]))
            undecided = open_rows[(outcome != _ABSURD) & (src.ingested[open_rows] != hi)]
            for stamp in np.unique(src.ingested[undecided]).tolist():
                group = undecided[src.ingested[undecided] == stamp]
                outcome, valid, good = src.decode(decoder, group, int(stamp))
                verdict[group] = outcome
                kept.append((valid, good))
    parts = [t for t, _ in kept if t.num_rows]
    valid = pa.concat_tables(parts) if parts else decoder.contract.bronze_schema().empty_table()
    idx = np.concatenate([g for _, g in kept]) if kept else np.empty(0, dtype=np.int64)
    # The decoder stamped the time of its pass; every row keeps the time it first arrived.
    col = valid.schema.get_field_index("_ingested_at")
    ts_type = valid.schema.field(col).type
    valid = valid.set_column(
        col, valid.schema.field(col), pa.array(src.ingested[idx], pa.int64()).cast(ts_type)
    )
    failing = Counter(
        (str(src.reasons[i]), str(verdict[i])) for i in np.flatnonzero(verdict != VALID).tolist()
    )
    return Judged(valid=valid, valid_reasons=src.reasons[idx], still_failing=failing)


__all__ = ["Judged", "judge"]
