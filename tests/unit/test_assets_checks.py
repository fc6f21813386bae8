"""The bronze check rules (tidelake.quality.bronze and its helpers) on small hand-made tables."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandera.errors
import polars as pl
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from tidelake import contracts
from tidelake.contracts import (
    BRONZE_PARTITION_BY,
    QUARANTINE_PARTITION_BY,
    QUARANTINE_PATH,
    QUARANTINE_SCHEMA,
    TOPICS,
)
from tidelake.ingest.tables import ensure_table
from tidelake.lake import Lake
from tidelake.quality import bronze as checks
from tidelake.quality.offsets import offset_gaps, overlapping_offsets
from tidelake.quality.schema import bronze_dataframe_schema, meta_column_types
from tidelake.settings import KafkaSettings, LakeSettings

CONTRACT = TOPICS["shop.searches"]
KAFKA = KafkaSettings(topic_prefix="c.", consumer_group="g")
TOPIC = CONTRACT.physical_topic("c.")


def offsets(rows: list[tuple[int, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"_partition": pl.Int32, "_offset": pl.Int64}, orient="row")


def test_duplicate_coordinates_are_counted_once_per_coordinate() -> None:
    coords = pl.DataFrame(
        {"_topic": ["t"] * 4, "_partition": [0, 0, 0, 1], "_offset": [1, 1, 2, 1]}
    )

    dups = checks.duplicate_coordinates(coords)

    assert dups.to_dicts() == [{"_topic": "t", "_partition": 0, "_offset": 1, "count": 2}]


def test_offset_gaps_lists_missing_ranges_per_partition() -> None:
    gaps = offset_gaps(offsets([(0, 0), (0, 1), (0, 5), (1, 3), (1, 4)]))

    assert gaps.to_dicts() == [{"_partition": 0, "first_missing": 2, "last_missing": 4}]


def test_offset_gaps_repeats_are_not_gaps_and_the_start_may_be_above_zero() -> None:
    # Retention may have removed the head of the topic before the first ingestion.
    assert offset_gaps(offsets([(0, 7), (0, 7), (0, 8)])).is_empty()


def test_offset_gaps_catches_a_lost_tail_before_the_committed_position() -> None:
    gaps = offset_gaps(offsets([(0, 0), (0, 1)]), ends={0: 5, 1: 3})

    assert gaps.to_dicts() == [
        {"_partition": 0, "first_missing": 2, "last_missing": 4},
        {"_partition": 1, "first_missing": None, "last_missing": 2},
    ]


def test_overlapping_offsets_are_records_in_both_tables() -> None:
    both = overlapping_offsets(offsets([(0, 1), (0, 2)]), offsets([(0, 2), (0, 3)]))

    assert both.to_dicts() == [{"_partition": 0, "_offset": 2}]


def _filler(kind: pa.DataType, now: datetime) -> Any:
    """A valid value of an Arrow type, so rows follow the bronze schema whatever it holds."""
    if pa.types.is_timestamp(kind):
        return now
    if pa.types.is_date(kind):
        return now.date()
    if pa.types.is_boolean(kind):
        return False
    if pa.types.is_integer(kind):
        return 1
    if pa.types.is_floating(kind):
        return 1.0
    if pa.types.is_binary(kind):
        return b"x"
    return "x"


def _bronze_rows(lake: Lake, rows: list[tuple[int, int]], results_count: int = 3) -> None:
    now = datetime.now(UTC)
    n = len(rows)
    data: dict[str, list[Any]] = {
        "event_id": [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)],
        "event_type": ["search"] * n,
        "results_count": [results_count] * n,
        "_topic": [TOPIC] * n,
        "_partition": [p for p, _ in rows],
        "_offset": [o for _, o in rows],
        "event_hour": [now.hour] * n,
    }
    schema = CONTRACT.bronze_schema()
    for f in schema:
        data.setdefault(f.name, [_filler(f.type, now)] * n)
    table = ensure_table(
        lake, CONTRACT.bronze_path, schema, BRONZE_PARTITION_BY, CONTRACT.description
    )
    write_deltalake(table, pa.Table.from_pydict(data, schema=schema), mode="append")


def _quarantine_rows(lake: Lake, rows: list[tuple[int, int]]) -> None:
    now = datetime.now(UTC)
    n = len(rows)
    data = {
        "_topic": [TOPIC] * n,
        "_partition": [p for p, _ in rows],
        "_offset": [o for _, o in rows],
        "_kafka_timestamp": [now] * n,
        "_ingested_at": [now] * n,
        "key": [b"k"] * n,
        "raw": [b"{"] * n,
        "error": ["malformed_json"] * n,
        "error_detail": ["bad"] * n,
        "ingest_date": [date.today()] * n,
    }
    table = ensure_table(
        lake, QUARANTINE_PATH, QUARANTINE_SCHEMA, QUARANTINE_PARTITION_BY, "quarantine"
    )
    write_deltalake(table, pa.Table.from_pydict(data, schema=QUARANTINE_SCHEMA), mode="append")


def test_contiguity_counts_quarantine_and_flags_a_lost_record(tmp_path: Path) -> None:
    lake = Lake.from_settings(LakeSettings(uri=str(tmp_path)))
    _bronze_rows(lake, [(0, 0), (0, 1), (0, 3), (1, 0)])
    _quarantine_rows(lake, [(0, 2), (1, 2)])  # partition 1 lost offset 1

    outcome = checks.check_offsets_contiguous(lake, CONTRACT, KAFKA)

    assert not outcome.passed
    assert outcome.metadata["missing_offsets"] == 1
    assert outcome.metadata["gap_examples"] == [
        {"_partition": 1, "first_missing": 1, "last_missing": 1}
    ]


def test_contiguity_passes_when_quarantine_fills_the_holes(tmp_path: Path) -> None:
    lake = Lake.from_settings(LakeSettings(uri=str(tmp_path)))
    _bronze_rows(lake, [(0, 0), (0, 1), (0, 3)])
    _quarantine_rows(lake, [(0, 2)])

    outcome = checks.check_offsets_contiguous(lake, CONTRACT, KAFKA)

    assert outcome.passed, outcome.description


def test_the_schema_check_reports_rows_breaking_the_contract(tmp_path: Path) -> None:
    lake = Lake.from_settings(LakeSettings(uri=str(tmp_path)))
    _bronze_rows(lake, [(0, 0), (0, 1)], results_count=-1)  # results_count must be >= 0

    whole = checks.check_bronze_schema(lake, CONTRACT)
    outside = checks.check_bronze_schema(lake, CONTRACT, window={0: (5, 9)})

    assert not whole.passed
    assert "greater_than_or_equal_to" in whole.description
    assert outside.passed  # the window holds none of the bad rows
    assert outside.metadata["rows_validated"] == 0


def test_the_generated_pandera_schema_matches_the_bronze_arrow_schema() -> None:
    for contract in TOPICS.values():
        schema = bronze_dataframe_schema(contract)
        assert list(schema.columns) == contract.bronze_schema().names


def test_checks_on_a_missing_table_pass_trivially(tmp_path: Path) -> None:
    lake = Lake.from_settings(LakeSettings(uri=str(tmp_path)))

    assert checks.check_unique_coordinates(lake, CONTRACT).passed
    assert checks.check_offsets_contiguous(lake, CONTRACT, KAFKA).passed
    assert checks.check_bronze_schema(lake, CONTRACT).passed


def test_the_schema_check_takes_bronze_meta_columns_and_their_types_from_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another meta column set than today's: one dropped, one added (a non-nullable bool).
    fields = (
        *(f for f in contracts.BRONZE_META_FIELDS if f.name != "_kafka_timestamp"),
        pa.field("_replayed", pa.bool_(), nullable=False),
    )
    monkeypatch.setattr(contracts, "BRONZE_META_FIELDS", fields)
    lake = Lake.from_settings(LakeSettings(uri=str(tmp_path)))
    _bronze_rows(lake, [(0, 0), (0, 1)])
    schema = bronze_dataframe_schema(CONTRACT)
    rows = pl.read_delta(lake.uri(CONTRACT.bronze_path))

    assert list(schema.columns) == CONTRACT.bronze_schema().names
    assert checks.check_bronze_schema(lake, CONTRACT).passed
    assert meta_column_types()["_replayed"] == (pl.Boolean(), False)
    with pytest.raises(pandera.errors.SchemaError, match="_replayed"):
        schema.validate(rows.with_columns(_replayed=pl.lit(None, pl.Boolean)))
    with pytest.raises(pandera.errors.SchemaError, match="_replayed"):
        schema.validate(rows.with_columns(_replayed=pl.lit("no")))
