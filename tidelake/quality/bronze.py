"""Data checks on the bronze and quarantine tables, as pure functions (no Dagster).

Three rules hold for every bronze table (docs/ARCHITECTURE.md, "Checks beside bronze"):

* **unique coordinates**: ``(_topic, _partition, _offset)`` is unique in bronze; bronze is the
  faithful log, so a repeated coordinate means a record was written twice.
* **contiguous offsets**: per Kafka partition, every offset up to bronze's stored resume position
  is accounted for exactly once: in bronze, in quarantine, or in a range a commit annotation
  (:mod:`tidelake.ingest.annotations`) records as ``skipped`` (transaction markers, aborted
  transactional records, compacted-away records: no data record to land) or ``accepted`` (an
  operator accepted the offsets as lost, with an audit). Anything else missing is a lost record.
* **contract schema**: the table's columns and types are the contract's, and the rows satisfy the
  contract's rules (non-null fields, allowed event types, numeric domains), checked with pandera.

Cost. The coordinate checks take a *window* (partition → ``[first, next)``, what one ingestion
batch accounted for: :attr:`tidelake.ingest.BatchReport.window`) and read only the rows whose
``(_partition, _offset)`` fall in ``[first - 1, next)``; the offset below the window is the seam
with what came before. Files are chosen from the Delta log before anything is read
(:func:`tidelake.quality.offsets.read_rows`): per-file min/max statistics of
``_partition``/``_offset`` rule out every file that cannot hold a selected row. Statistics alone
prune badly when one Kafka partition runs far ahead of another (a hot key, transaction markers):
a file mixing them spans a wide offset range. So, given the batch's ``since_version``, only files
added by commits from that version on are candidates
(:func:`tidelake.quality.offsets.files_added_since`; the seam is normally in commit
``since_version``, the batch before), and an offset not found there is looked up in every file
before it is reported missing. A check thus costs O(batch), not O(history). Without a window
(``window=None``) the checks read the whole table: the audit (:mod:`tidelake.quality.audit`),
which keeps reporting an old gap or duplicate that the windowed check of its batch reported once.

Where things are: this module holds the unique-coordinates check and is the entry point for all
three (import them from here); :mod:`tidelake.quality.contiguity` the contiguous-offsets check;
:mod:`tidelake.quality.schema` the contract-schema check; :mod:`tidelake.quality.offsets` the
reading, offset-range and annotation helpers they share; :mod:`tidelake.quality.outcome` the
:class:`CheckOutcome` every check returns (the Dagster layer turns it into an asset check result).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from tidelake.contracts import TopicContract
from tidelake.ingest.report import BatchReport
from tidelake.lake import Lake
from tidelake.quality.contiguity import check_offsets_contiguous
from tidelake.quality.offsets import (
    COORDINATES,
    OffsetWindow,
    files_added_since,
    read_rows,
    read_selection,
)
from tidelake.quality.outcome import MAX_LISTED, CheckOutcome, window_meta
from tidelake.quality.schema import check_bronze_schema
from tidelake.settings import KafkaSettings

UNIQUE_COORDINATES = "unique_kafka_coordinates"
CONTIGUOUS_OFFSETS = "contiguous_offsets"
CONTRACT_SCHEMA = "contract_schema"
BRONZE_CHECK_NAMES: tuple[str, ...] = (UNIQUE_COORDINATES, CONTIGUOUS_OFFSETS, CONTRACT_SCHEMA)
"""The per-batch bronze checks, by their public names (the Dagster asset checks' names)."""

__all__ = [
    "BRONZE_CHECK_NAMES",
    "CONTIGUOUS_OFFSETS",
    "CONTRACT_SCHEMA",
    "UNIQUE_COORDINATES",
    "CheckOutcome",
    "OffsetWindow",
    "check_batch",
    "check_bronze_schema",
    "check_offsets_contiguous",
    "check_unique_coordinates",
    "duplicate_coordinates",
]


def duplicate_coordinates(coords: pl.DataFrame) -> pl.DataFrame:
    """Coordinates ``(_topic, _partition, _offset)`` that occur more than once, with ``count``.

    Rule: a Kafka record has exactly one coordinate, so bronze holds each coordinate at most once.
    """
    return (
        coords.group_by(COORDINATES)
        .agg(pl.len().alias("count"))
        .filter(pl.col("count") > 1)
        .sort(COORDINATES)
    )


def check_unique_coordinates(
    lake: Lake,
    contract: TopicContract,
    window: OffsetWindow | None = None,
    since_version: int | None = None,
) -> CheckOutcome:
    """Check that ``bronze/<table>`` holds each Kafka coordinate at most once.

    With ``window``, only coordinates in ``[first - 1, next)`` of each partition are read, and
    with ``since_version`` too only from files added by commits from that version on (see
    :func:`~tidelake.quality.offsets.files_added_since`): a batch that repeats a coordinate of
    itself, of a concurrent writer or of the batch before is caught; a repeat of a coordinate
    committed longer ago is left to the whole-table audit (no window). ``rows`` is the table's
    row count either way.
    """
    table = lake.open(contract.bronze_path)
    if table is None:
        return CheckOutcome(True, "bronze table does not exist yet", {"rows": 0, "rows_read": 0})
    meta: dict[str, Any] = {"table_version": table.version(), "window": window_meta(window)}
    if window is not None and not read_selection(window):
        meta |= {"rows": table.count(), "rows_read": 0, "files_read": 0}
        return CheckOutcome(True, "nothing was added to bronze by this run", meta)
    recent = (
        files_added_since(table, since_version, lake.storage_options)
        if window is not None and since_version is not None
        else None
    )
    read = read_rows(
        table, COORDINATES, None if window is None else read_selection(window), None, recent
    )
    coords = read.frame
    dups = duplicate_coordinates(coords)
    extra = int(dups["count"].sum() - dups.height) if dups.height else 0
    meta |= {
        "rows": coords.height if window is None else table.count(),
        "rows_read": coords.height,
        "files_read": read.files,
        "duplicate_coordinates": dups.height,
        "extra_rows": extra,
    }
    if dups.height:
        meta["examples"] = dups.head(MAX_LISTED).to_dicts()
        return CheckOutcome(
            False,
            f"{dups.height} Kafka coordinates occur more than once ({extra} extra rows)",
            meta,
        )
    scope = "rows" if window is None else "rows of this run's offsets"
    return CheckOutcome(True, f"{coords.height} {scope}, every Kafka coordinate once", meta)


def check_batch(
    lake: Lake, contract: TopicContract, kafka: KafkaSettings, report: BatchReport
) -> dict[str, CheckOutcome]:
    """The three per-batch checks over what the batch described by ``report`` accounted for.

    Used by the bronze asset after each run and by the ingestion worker after each batch.
    """
    return {
        UNIQUE_COORDINATES: check_unique_coordinates(
            lake, contract, report.window, report.since_version
        ),
        CONTIGUOUS_OFFSETS: check_offsets_contiguous(
            lake, contract, kafka, report.window, report.since_version
        ),
        CONTRACT_SCHEMA: check_bronze_schema(lake, contract, report.offsets),
    }
