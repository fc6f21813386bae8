"""The bronze coordinate checks over one batch's window, on real Delta tables written like the
engine writes them: rows, the txn positions and the ``tidelake`` commit annotation in one commit,
quarantine first, bronze second."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from assets.bronze.checks import CONTIGUOUS_OFFSETS, UNIQUE_COORDINATES, run_bronze_checks
from tidelake.contracts import (
    BRONZE_PARTITION_BY,
    QUARANTINE_PARTITION_BY,
    QUARANTINE_PATH,
    QUARANTINE_SCHEMA,
    TOPICS,
)
from tidelake.ingest import BatchReport
from tidelake.ingest.annotations import CommitAnnotation, Ranges
from tidelake.ingest.positions import app_id
from tidelake.ingest.tables import ensure_table
from tidelake.lake import Lake
from tidelake.quality import bronze as checks
from tidelake.settings import KafkaSettings, LakeSettings

CONTRACT = TOPICS["shop.searches"]
GROUP = "g"
KAFKA = KafkaSettings(topic_prefix="w.", consumer_group=GROUP)
TOPIC = CONTRACT.physical_topic("w.")
START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
AUDIT = {
    "reason": "retention expired during an outage",
    "by": "ops@example.com",
    "at": "2026-03-01T02:00:00+00:00",
}


def _value(kind: pa.DataType, when: datetime) -> Any:
    """A valid value of an Arrow type, so rows follow the bronze schema whatever it holds."""
    if pa.types.is_timestamp(kind):
        return when
    if pa.types.is_date(kind):
        return when.date()
    if pa.types.is_boolean(kind):
        return False
    if pa.types.is_integer(kind):
        return 1
    if pa.types.is_floating(kind):
        return 1.0
    return "x"


def bronze_rows(coords: list[tuple[int, int]], hours: int = 1) -> pa.Table:
    """Valid bronze rows at ``coords``, spread over ``hours`` hour partitions (one file each)."""
    schema = CONTRACT.bronze_schema()
    whens = [START + timedelta(hours=o % hours) for _, o in coords]
    data: dict[str, list[Any]] = {
        "event_id": [f"00000000-0000-4000-8000-{p:04d}{o:08d}" for p, o in coords],
        "event_type": ["search"] * len(coords),
        "event_time": whens,
        "_topic": [TOPIC] * len(coords),
        "_partition": [p for p, _ in coords],
        "_offset": [o for _, o in coords],
        "event_date": [w.date() for w in whens],
        "event_hour": [w.hour for w in whens],
    }
    for f in schema:
        data.setdefault(f.name, [_value(f.type, START)] * len(coords))
    return pa.Table.from_pydict(data, schema=schema)


def quarantine_rows(coords: list[tuple[int, int]]) -> pa.Table:
    n = len(coords)
    return pa.Table.from_pydict(
        {
            "_topic": [TOPIC] * n,
            "_partition": [p for p, _ in coords],
            "_offset": [o for _, o in coords],
            "_kafka_timestamp": [START] * n,
            "_ingested_at": [START] * n,
            "key": [b"k"] * n,
            "raw": [b"{"] * n,
            "error": ["malformed_json"] * n,
            "error_detail": ["bad"] * n,
            "ingest_date": [START.date()] * n,
        },
        schema=QUARANTINE_SCHEMA,
    )


@dataclass
class Topic:
    """A bronze + quarantine lake fed batch by batch the way the engine commits."""

    lake: Lake
    positions: dict[int, int] = field(default_factory=dict)

    def bronze(self) -> DeltaTable:
        return ensure_table(
            self.lake,
            CONTRACT.bronze_path,
            CONTRACT.bronze_schema(),
            BRONZE_PARTITION_BY,
            CONTRACT.description,
        )

    def quarantine(self) -> DeltaTable:
        return ensure_table(
            self.lake, QUARANTINE_PATH, QUARANTINE_SCHEMA, QUARANTINE_PARTITION_BY, "quarantine"
        )

    def commit(
        self,
        table: DeltaTable,
        rows: pa.Table,
        annotation: CommitAnnotation,
        positions: dict[int, int],
    ) -> None:
        txns = [Transaction(app_id(GROUP, TOPIC, p), nxt) for p, nxt in sorted(positions.items())]
        write_deltalake(
            table,
            rows,
            mode="append",
            commit_properties=CommitProperties(
                custom_metadata=annotation.custom_metadata(), app_transactions=txns
            ),
        )

    def batch(
        self,
        counts: dict[int, int],
        *,
        invalid: Set[tuple[int, int]] = frozenset(),
        markers: Set[tuple[int, int]] = frozenset(),
        lost: Set[tuple[int, int]] = frozenset(),
        first: dict[int, int] | None = None,
        hours: int = 1,
    ) -> BatchReport:
        """One batch reading ``counts[p]`` offsets per partition from its position.

        ``markers`` are never delivered (recorded as skipped), ``invalid`` go to quarantine,
        ``lost`` vanish without a trace (the bug the check exists for). Returns the report's
        ``window`` and ``since_version`` as the engine fills them.
        """
        bronze = self.bronze()
        since = bronze.version()
        window: dict[int, tuple[int, int]] = {}
        good: list[tuple[int, int]] = []
        bad: list[tuple[int, int]] = []
        skipped: Ranges = {}
        for p, n in sorted(counts.items()):
            start = self.positions.get(p, (first or {}).get(p, 0))
            window[p] = (start, start + n)
            for o in range(start, start + n):
                if (p, o) in markers:
                    skipped.setdefault(p, []).append((o, o))
                elif (p, o) in invalid:
                    bad.append((p, o))
                elif (p, o) not in lost:
                    good.append((p, o))
        ends = {p: nxt for p, (_, nxt) in window.items()}
        if bad:
            note = CommitAnnotation("ingest", TOPIC, group=GROUP, ranges=dict(window))
            self.commit(self.quarantine(), quarantine_rows(bad), note, ends)
        note = CommitAnnotation("ingest", TOPIC, group=GROUP, ranges=dict(window), skipped=skipped)
        self.commit(bronze, bronze_rows(good, hours), note, ends)
        self.positions |= ends
        return BatchReport(
            topic=CONTRACT.name, physical_topic=TOPIC, window=window, since_version=since
        )

    def accept_gap(self, partition: int, first: int, last: int, move: bool = True) -> None:
        """An operator accepts ``[first, last]`` as lost: an empty commit with the audit."""
        note = CommitAnnotation(
            "accept_gap",
            TOPIC,
            group=GROUP,
            ranges={partition: (first, last + 1)},
            accepted={partition: [(first, last)]},
            audit=dict(AUDIT),
        )
        positions = {partition: last + 1} if move else {}
        self.commit(self.bronze(), bronze_rows([]), note, positions)
        if move:
            self.positions[partition] = last + 1

    def append_bronze(self, coords: list[tuple[int, int]]) -> None:
        """Rows written behind the protocol's back: no txn, no annotation."""
        write_deltalake(self.bronze(), bronze_rows(coords), mode="append")


@pytest.fixture
def topic(tmp_path: Path) -> Topic:
    return Topic(Lake.from_settings(LakeSettings(uri=str(tmp_path))))


def contiguous(t: Topic, report: BatchReport | None = None) -> checks.CheckOutcome:
    if report is None:
        return checks.check_offsets_contiguous(t.lake, CONTRACT, KAFKA)
    return checks.check_offsets_contiguous(
        t.lake, CONTRACT, KAFKA, report.window, report.since_version
    )


def unique(t: Topic, report: BatchReport | None = None) -> checks.CheckOutcome:
    if report is None:
        return checks.check_unique_coordinates(t.lake, CONTRACT)
    return checks.check_unique_coordinates(t.lake, CONTRACT, report.window, report.since_version)


def spoil_all_but(t: Topic, last_commits: int) -> int:
    """Overwrite every data file of both tables older than their last ``last_commits`` commits
    with garbage, so a check that opens one (or reads the whole table) raises instead of
    passing. Returns how many files were spoiled."""
    spoiled = 0
    for table in (t.bronze(), t.quarantine()):
        before = table.version() - last_commits
        if before < 0:
            continue
        for path in DeltaTable(table.table_uri, version=before).file_uris():
            Path(path).write_bytes(b"not parquet")
            spoiled += 1
    return spoiled


# -- coverage inside the window ------------------------------------------------------------------


def test_a_clean_window_passes_and_reads_only_its_offsets_and_the_one_before(topic: Topic) -> None:
    topic.batch({0: 10, 1: 10})
    topic.batch({0: 10, 1: 10}, invalid={(0, 12), (1, 19)})
    last = topic.batch({0: 5, 1: 3})

    outcome = contiguous(topic, last)

    assert outcome.passed, outcome.description
    assert outcome.metadata["window"] == {"0": [20, 25], "1": [20, 23]}
    assert outcome.metadata["rows_read"] == 5 + 3 + 2  # the window and one seam row each
    assert outcome.metadata["missing_offsets"] == 0
    assert outcome.metadata["positions"] == {"0": 25, "1": 23}
    assert unique(topic, last).metadata["rows_read"] == 9  # partition 1's seam is quarantined
    assert unique(topic, last).metadata["rows"] == 20 + 20 + 8 - 2  # table rows, from the log


def test_a_missing_offset_in_the_window_fails_with_the_gap_listed(topic: Topic) -> None:
    topic.batch({0: 10, 1: 10})
    report = topic.batch({0: 10, 1: 10}, lost={(1, 14), (1, 15)}, invalid={(1, 16)})

    outcome = contiguous(topic, report)

    assert not outcome.passed
    assert outcome.metadata["missing_offsets"] == 2
    assert outcome.metadata["gaps"] == 1
    assert outcome.metadata["gap_examples"] == [
        {"_partition": 1, "first_missing": 14, "last_missing": 15}
    ]


def test_a_lost_tail_before_the_stored_position_fails(topic: Topic) -> None:
    report = topic.batch({0: 10}, lost={(0, 8), (0, 9)})

    outcome = contiguous(topic, report)

    assert not outcome.passed
    assert outcome.metadata["gap_examples"] == [
        {"_partition": 0, "first_missing": 8, "last_missing": 9}
    ]


def test_a_gap_inside_a_skipped_range_passes_and_is_counted_as_skipped(topic: Topic) -> None:
    topic.batch({0: 10})
    # A transaction's commit marker and three aborted records: never delivered, not lost.
    report = topic.batch({0: 10}, markers={(0, 12), (0, 13), (0, 14), (0, 19)})

    outcome = contiguous(topic, report)

    assert outcome.passed, outcome.description
    assert outcome.metadata["skipped_offsets"] == 4
    assert outcome.metadata["missing_offsets"] == 0
    assert "4 skipped" in outcome.description


def test_an_operator_accepted_gap_passes_with_its_audit_and_is_not_reported_again(
    topic: Topic,
) -> None:
    topic.batch({0: 10})
    since = topic.bronze().version()
    topic.accept_gap(0, 10, 14)  # retention deleted 10-14 before they were read
    after_gap = topic.batch({0: 5})
    # The engine's window runs from the start of the accepted gap, and its since_version is the
    # version before the accept-gap commit.
    report = BatchReport(
        topic=CONTRACT.name, physical_topic=TOPIC, window={0: (10, 20)}, since_version=since
    )
    assert after_gap.window == {0: (15, 20)}

    outcome = contiguous(topic, report)
    later = contiguous(topic, topic.batch({0: 5}))

    assert outcome.passed, outcome.description
    assert outcome.metadata["accepted_gap_offsets"] == 5
    assert outcome.metadata["accepted_gaps"] == [{"partition": 0, "first": 10, "last": 14, **AUDIT}]
    assert "5 accepted as lost" in outcome.description
    assert later.passed
    assert later.metadata["accepted_gaps"] == []
    assert later.metadata["accepted_gap_offsets"] == 0
    whole = contiguous(topic)
    assert whole.passed, whole.description
    assert whole.metadata["accepted_gaps"] == [{"partition": 0, "first": 10, "last": 14, **AUDIT}]


# -- what lies outside the window ----------------------------------------------------------------


def test_a_gap_in_older_history_fails_only_the_full_check_until_it_is_accepted(
    topic: Topic,
) -> None:
    topic.batch({0: 10}, lost={(0, 3)})
    report = topic.batch({0: 10})

    windowed = contiguous(topic, report)
    whole = contiguous(topic)
    topic.accept_gap(0, 3, 3, move=False)
    accepted = contiguous(topic)

    assert windowed.passed, windowed.description
    assert not whole.passed
    assert whole.metadata["gap_examples"] == [
        {"_partition": 0, "first_missing": 3, "last_missing": 3}
    ]
    assert accepted.passed, accepted.description
    assert accepted.metadata["accepted_gap_offsets"] == 1


def test_skipped_offsets_count_as_covered_in_the_full_check_too(topic: Topic) -> None:
    topic.batch({0: 10}, markers={(0, 0), (0, 9)})
    topic.batch({0: 10}, markers={(0, 15)})

    whole = contiguous(topic)

    assert whole.passed, whole.description
    assert whole.metadata["skipped_offsets"] == 3


def test_a_duplicate_coordinate_in_the_window_fails(topic: Topic) -> None:
    topic.batch({0: 10})
    report = topic.batch({0: 10})
    topic.append_bronze([(0, 9), (0, 17)])  # 9 is the seam below the window

    outcome = unique(topic, report)

    assert not outcome.passed
    assert outcome.metadata["duplicate_coordinates"] == 2
    assert [e["_offset"] for e in outcome.metadata["examples"]] == [9, 17]


def test_a_duplicate_outside_the_window_is_not_read_but_the_full_check_catches_it(
    topic: Topic,
) -> None:
    topic.batch({0: 10})
    topic.batch({0: 10})
    topic.append_bronze([(0, 4)])  # a recent file, but its statistics rule it out
    report = topic.batch({0: 10})

    windowed = unique(topic, report)
    whole = unique(topic)

    assert windowed.passed, windowed.description
    # Just the window's 10 offsets: the stray row's file is among the files added since
    # since_version but its statistics rule it out, and the seam's batch is older than
    # since_version (which is the stray append).
    assert windowed.metadata["rows_read"] == 10
    assert not whole.passed
    assert whole.metadata["examples"] == [
        {"_topic": TOPIC, "_partition": 0, "_offset": 4, "count": 2}
    ]


def test_an_offset_in_both_tables_fails(topic: Topic) -> None:
    topic.batch({0: 10})
    report = topic.batch({0: 10}, invalid={(0, 13)})
    topic.commit(
        topic.quarantine(),
        quarantine_rows([(0, 15)]),
        CommitAnnotation("ingest", TOPIC, group=GROUP),
        {},
    )

    outcome = contiguous(topic, report)

    assert not outcome.passed
    assert outcome.metadata["in_both_tables"] == 1
    assert outcome.metadata["both_examples"] == [{"_partition": 0, "_offset": 15}]


def test_a_bronze_row_beyond_the_stored_position_fails(topic: Topic) -> None:
    topic.batch({0: 10, 1: 10})
    report = topic.batch({0: 10, 1: 10})
    topic.append_bronze([(1, 20), (1, 21)])  # rows without their txn: data ahead of the position

    windowed = contiguous(topic, report)
    whole = contiguous(topic)

    for outcome in (windowed, whole):
        assert not outcome.passed
        assert outcome.metadata["ahead_of_position"] == 2
        assert outcome.metadata["ahead_examples"] == [
            {"_partition": 1, "_offset": 20},
            {"_partition": 1, "_offset": 21},
        ]
        assert "ahead" in outcome.description


def test_quarantine_rows_past_the_position_are_in_flight_and_ignored(topic: Topic) -> None:
    topic.batch({0: 10})
    report = topic.batch({0: 10})
    # The next batch committed quarantine and has not committed bronze yet.
    topic.commit(
        topic.quarantine(),
        quarantine_rows([(0, 20), (0, 22)]),
        CommitAnnotation("ingest", TOPIC, group=GROUP, ranges={0: (20, 25)}),
        {0: 25},
    )

    windowed = contiguous(topic, report)
    whole = contiguous(topic)

    assert windowed.passed, windowed.description
    assert whole.passed, whole.description
    assert whole.metadata["quarantine_rows"] == 0


# -- the seam below the window -------------------------------------------------------------------


def test_a_missing_offset_below_the_window_is_reported(topic: Topic) -> None:
    topic.batch({0: 10, 1: 10}, lost={(1, 9)})
    report = topic.batch({0: 10, 1: 10})

    outcome = contiguous(topic, report)

    assert not outcome.passed
    assert outcome.metadata["boundary_missing"] == {"1": 9}
    assert {"_partition": 1, "first_missing": 9, "last_missing": 9} in outcome.metadata[
        "gap_examples"
    ]
    assert "partition 1 offset 9" in outcome.description


def test_a_seam_offset_skipped_by_an_older_commit_is_found_by_the_lookback(topic: Topic) -> None:
    topic.batch({0: 10}, markers={(0, 9)})
    topic.batch({1: 10})  # commits in between: the skipped range is not in the window's commits
    report = topic.batch({0: 10})

    outcome = contiguous(topic, report)

    assert outcome.passed, outcome.description
    assert outcome.metadata["skipped_offsets"] == 0  # outside the window: covered, not counted


def test_a_first_window_above_zero_has_no_seam_to_check(topic: Topic) -> None:
    # Retention had removed offsets 0-99 before the partition was first read.
    report = topic.batch({0: 10}, first={0: 100})

    outcome = contiguous(topic, report)

    assert outcome.passed, outcome.description
    assert outcome.metadata["window"] == {"0": [100, 110]}


# -- cost ----------------------------------------------------------------------------------------


def test_the_windowed_checks_open_only_the_files_that_can_hold_the_window(topic: Topic) -> None:
    for _ in range(40):  # 40 batches x 5 hour partitions = 200 bronze files
        first = topic.positions.get(0, 0)
        report = topic.batch({0: 10, 1: 10, 2: 10}, hours=5, invalid={(0, first)})
    assert len(topic.bronze().file_uris()) == 200
    # Only the last two batches' files stay readable: the window and its seam are there.
    assert spoil_all_but(topic, 2) == 38 * 5 + 38

    windowed = contiguous(topic, report)
    coords = unique(topic, report)

    assert windowed.passed, windowed.description
    assert coords.passed, coords.description
    assert windowed.metadata["files_read"] <= 12  # the last batch's files and the seam's
    assert coords.metadata["files_read"] <= 10
    assert coords.metadata["rows"] == 40 * 30 - 40


def test_a_partition_far_ahead_of_the_others_does_not_widen_the_read(topic: Topic) -> None:
    # Partition 0 runs 2.5x ahead (a hot key, or transaction markers), so every file's offset
    # range spans the other partitions' windows and statistics alone would prune little: the
    # read is bounded by the files the commits since since_version added.
    for _ in range(40):
        report = topic.batch({0: 25, 1: 10, 2: 10}, hours=5)
    assert spoil_all_but(topic, 2) == 38 * 5

    windowed = contiguous(topic, report)
    coords = unique(topic, report)

    assert windowed.passed, windowed.description
    assert coords.passed, coords.description
    assert windowed.metadata["files_read"] <= 10
    assert coords.metadata["files_read"] <= 10


def test_offsets_committed_before_the_batch_began_are_still_found_before_a_gap_is_reported(
    topic: Topic,
) -> None:
    topic.batch({0: 10})
    topic.append_bronze([(0, 10), (0, 11)])  # another writer got there first, without a txn
    report = topic.batch({0: 10}, lost={(0, 10), (0, 11)})  # ... so this batch skipped them

    outcome = contiguous(topic, report)

    assert outcome.passed, outcome.description
    assert outcome.metadata["bronze_rows"] == 11  # 9 (the seam) to 19


# -- the Dagster layer passes the report's window ------------------------------------------------


def test_run_bronze_checks_scopes_the_coordinate_checks_to_the_reports_window(
    topic: Topic,
) -> None:
    topic.batch({0: 10}, lost={(0, 2)})
    clean = topic.batch({0: 10})
    broken = topic.batch({0: 10}, lost={(0, 25)})

    assert all(o.passed for o in run_bronze_checks(topic.lake, CONTRACT, KAFKA, clean).values())
    outcomes = run_bronze_checks(topic.lake, CONTRACT, KAFKA, broken)
    assert not outcomes[CONTIGUOUS_OFFSETS].passed
    assert outcomes[CONTIGUOUS_OFFSETS].metadata["gap_examples"] == [
        {"_partition": 0, "first_missing": 25, "last_missing": 25}
    ]


def test_a_run_that_added_nothing_passes_the_coordinate_checks_without_reading(
    topic: Topic,
) -> None:
    topic.batch({0: 10}, lost={(0, 2)})
    topic.append_bronze([(0, 3)])
    idle = BatchReport(topic=CONTRACT.name, physical_topic=TOPIC, since_version=2)

    outcomes = run_bronze_checks(topic.lake, CONTRACT, KAFKA, idle)

    for name in (UNIQUE_COORDINATES, CONTIGUOUS_OFFSETS):
        assert outcomes[name].passed
        assert outcomes[name].description == "nothing was added to bronze by this run"
        assert outcomes[name].metadata["rows_read"] == 0
