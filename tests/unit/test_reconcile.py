"""Reconciliation: the producer ledger against bronze and quarantine, in a temporary local lake."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from tidelake.cli import main
from tidelake.contracts import (
    QUARANTINE_PARTITION_BY,
    QUARANTINE_PATH,
    QUARANTINE_SCHEMA,
    TOPICS,
    QuarantineReason,
)
from tidelake.lake import Lake
from tidelake.ledger import LEDGER_PATH, LEDGER_SCHEMA, LedgerKind
from tidelake.quality.reconcile import (
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_USAGE,
    ReconciliationReport,
    compare,
    reconcile,
)
from tidelake.settings import LakeSettings

CLICKS = TOPICS["shop.clicks"]
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(minute: int, second: int = 0) -> datetime:
    return T0 + timedelta(minutes=minute, seconds=second)


@dataclass
class LakeBuilder:
    """Builds ledger/bronze/quarantine rows like the simulator and ingest engine would."""

    root: Path
    prefix: str = ""
    ledger: list[dict[str, Any]] = field(default_factory=list)
    bronze: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    next_offset: int = 0

    def produce(
        self,
        event_time: datetime,
        *,
        kind: str = LedgerKind.ON_TIME,
        event_id: str | None = None,
        run_id: str = "run-a",
        land: bool = True,
        partition: int = 0,
    ) -> str:
        """Ledger one valid event and (by default) land it in bronze at the same coordinates."""
        event_id = event_id or str(uuid.uuid4())
        offset = self._offset()
        self.ledger.append(
            {
                "run_id": run_id,
                "topic": CLICKS.name,
                "event_id": event_id,
                "event_type": "click",
                "event_time": event_time,
                "kind": str(kind),
                "expected_error": None,
                "partition": partition,
                "offset": offset,
                "produced_at": event_time + timedelta(seconds=1),
            }
        )
        if land:
            self.land(event_id, event_time, partition=partition, offset=offset)
        return event_id

    def land(
        self, event_id: str, event_time: datetime, *, partition: int = 0, offset: int | None = None
    ) -> None:
        """A bronze row (offset not in the ledger unless given)."""
        self.bronze.append(
            {
                "event_id": event_id,
                "event_type": "click",
                "event_time": event_time,
                "received_time": None,
                "user_id": "u1",
                "session_id": "s1",
                "product_id": "p1",
                "element": "button",
                "_topic": CLICKS.physical_topic(self.prefix),
                "_partition": partition,
                "_offset": self._offset() if offset is None else offset,
                "_kafka_timestamp": event_time,
                "_key": "u1",
                "_ingested_at": event_time + timedelta(seconds=5),
                "event_date": event_time.date(),
                "event_hour": event_time.hour,
            }
        )

    def malformed(
        self,
        expected: QuarantineReason,
        *,
        quarantined_as: QuarantineReason | None = None,
        run_id: str = "run-a",
        quarantine: bool = True,
    ) -> int:
        """Ledger one malformed message and (by default) quarantine it with ``quarantined_as``."""
        offset = self._offset()
        self.ledger.append(
            {
                "run_id": run_id,
                "topic": CLICKS.name,
                "event_id": None,
                "event_type": None,
                "event_time": None,
                "kind": str(LedgerKind.MALFORMED),
                "expected_error": str(expected),
                "partition": 0,
                "offset": offset,
                "produced_at": at(0),
            }
        )
        if quarantine:
            reason = quarantined_as or expected
            self.quarantine.append(
                {
                    "_topic": CLICKS.physical_topic(self.prefix),
                    "_partition": 0,
                    "_offset": offset,
                    "_kafka_timestamp": at(0),
                    "_ingested_at": at(0, 5),
                    "key": b"u1",
                    "raw": b"{not json",
                    "error": str(reason),
                    "error_detail": "test",
                    "ingest_date": at(0).date(),
                }
            )
        return offset

    def _offset(self) -> int:
        self.next_offset += 1
        return self.next_offset - 1

    def write(self) -> Lake:
        lake = Lake.from_settings(LakeSettings(uri=str(self.root)))
        write_deltalake(
            lake.uri(LEDGER_PATH),
            pa.Table.from_pylist(self.ledger, schema=LEDGER_SCHEMA),
            mode="overwrite",
        )
        write_deltalake(
            lake.uri(CLICKS.bronze_path),
            pa.Table.from_pylist(self.bronze, schema=CLICKS.bronze_schema()),
            partition_by=["event_date", "event_hour"],
            mode="overwrite",
        )
        if self.quarantine:
            write_deltalake(
                lake.uri(QUARANTINE_PATH),
                pa.Table.from_pylist(self.quarantine, schema=QUARANTINE_SCHEMA),
                partition_by=list(QUARANTINE_PARTITION_BY),
                mode="overwrite",
            )
        return lake


@pytest.fixture
def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LakeBuilder:
    monkeypatch.setenv("LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.delenv("TIDELAKE_TOPIC_PREFIX", raising=False)
    return LakeBuilder(root=tmp_path / "lake")


def check(builder: LakeBuilder, **kwargs: Any) -> ReconciliationReport:
    return reconcile(builder.write(), topic_prefix=builder.prefix, **kwargs)


def minute_of(report: ReconciliationReport, when: datetime) -> Any:
    (row,) = [m for m in report.minutes if m.minute == when]
    return row


def test_a_perfect_match_is_ok_and_the_cli_exits_zero(
    builder: LakeBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(5):
        builder.produce(at(i % 2, i))
    builder.malformed(QuarantineReason.MALFORMED_JSON)
    builder.write()

    assert main(["validate"]) == EXIT_OK

    out = capsys.readouterr().out
    assert "shop.clicks" in out
    assert "RESULT: OK" in out
    report = reconcile(Lake.from_settings(LakeSettings(uri=str(builder.root))))
    (clicks,) = [t for t in report.topics if t.produced]
    assert (clicks.produced, clicks.landed, clicks.minutes, clicks.quarantined) == (5, 5, 2, 1)
    assert report.ok


def test_a_missing_event_is_reported_in_its_minute_with_its_id_and_exits_one(
    builder: LakeBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    builder.produce(at(0))
    lost = builder.produce(at(3, 30), land=False)
    builder.write()

    assert main(["validate"]) == EXIT_MISMATCH

    out = capsys.readouterr().out
    assert lost in out
    assert "2024-05-01 12:03" in out
    report = reconcile(Lake.from_settings(LakeSettings(uri=str(builder.root))))
    row = minute_of(report, at(3))
    assert (row.produced, row.landed, row.missing, row.status) == (1, 0, 1, "MISMATCH")
    assert row.missing_sample == (lost,)
    assert minute_of(report, at(0)).ok
    (clicks,) = [t for t in report.topics if t.produced]
    assert clicks.lost_offsets == 1  # the record is in neither bronze nor quarantine


def test_an_event_id_in_no_ledger_row_is_reported_as_unexpected(builder: LakeBuilder) -> None:
    builder.produce(at(0))
    stranger = str(uuid.uuid4())
    builder.land(stranger, at(0, 10))

    report = check(builder)

    row = minute_of(report, at(0))
    assert (row.produced, row.landed, row.unexpected) == (1, 2, 1)
    assert row.unexpected_sample == (stranger,)
    assert not report.ok
    assert stranger in report.render()


def test_producer_duplicates_are_counted_as_seen_and_are_still_ok(builder: LakeBuilder) -> None:
    event_id = builder.produce(at(1))
    builder.produce(at(1), kind=LedgerKind.DUPLICATE, event_id=event_id)

    report = check(builder)

    row = minute_of(report, at(1))
    assert (row.produced, row.landed, row.bronze_rows) == (1, 1, 2)
    assert (row.ledger_duplicates, row.duplicates_seen) == (1, 1)
    assert report.ok


def test_a_late_event_counts_in_the_minute_of_its_event_time(builder: LakeBuilder) -> None:
    builder.produce(at(5))
    late = builder.produce(at(0, 15), kind=LedgerKind.LATE)

    report = check(builder)

    early = minute_of(report, at(0))
    assert (early.produced, early.landed, early.late) == (1, 1, 1)
    assert minute_of(report, at(5)).late == 0
    assert report.ok
    assert late not in report.render()


def test_a_malformed_message_missing_from_quarantine_is_a_mismatch(builder: LakeBuilder) -> None:
    builder.produce(at(0))
    offset = builder.malformed(QuarantineReason.MISSING_FIELD, quarantine=False)

    report = check(builder)

    assert not report.ok
    (issue,) = [i for i in report.record_issues if i.problem == "not_quarantined"]
    assert (issue.offset, issue.expected_error) == (offset, "missing_field")
    (reason,) = report.reasons
    assert (reason.reason, reason.expected, reason.quarantined, reason.ok) == (
        "missing_field",
        1,
        0,
        False,
    )


def test_a_malformed_message_quarantined_with_another_reason_is_a_mismatch(
    builder: LakeBuilder,
) -> None:
    builder.produce(at(0))
    builder.malformed(QuarantineReason.WRONG_TYPE, quarantined_as=QuarantineReason.OUT_OF_RANGE)

    report = check(builder)

    assert not report.ok
    (issue,) = report.record_issues
    assert (issue.problem, issue.expected_error, issue.actual_error) == (
        "wrong_reason",
        "wrong_type",
        "out_of_range",
    )
    assert {(r.reason, r.expected, r.quarantined) for r in report.reasons} == {
        ("wrong_type", 1, 0),
        ("out_of_range", 0, 1),
    }


def test_scoping_by_run_id_ignores_other_runs_events_in_the_same_minutes(
    builder: LakeBuilder,
) -> None:
    mine = builder.produce(at(0), run_id="run-a")
    builder.produce(at(0, 20), run_id="run-b")
    builder.produce(at(7), run_id="run-b", land=False)  # run-b's own problem, not run-a's
    builder.malformed(QuarantineReason.MALFORMED_JSON, run_id="run-b", quarantine=False)

    report = check(builder, run_id="run-a")

    assert report.ok, report.render()
    assert [m.minute for m in report.minutes] == [at(0)]
    row = minute_of(report, at(0))
    assert (row.produced, row.landed, row.unexpected, row.other_runs) == (1, 1, 0, 1)
    assert mine not in row.unexpected_sample
    assert not check(builder, run_id="run-b").ok


def test_a_scoped_run_still_flags_event_ids_no_run_produced(builder: LakeBuilder) -> None:
    builder.produce(at(0), run_id="run-a")
    builder.produce(at(0, 20), run_id="run-b")
    builder.land(str(uuid.uuid4()), at(0, 40))

    report = check(builder, run_id="run-a")

    row = minute_of(report, at(0))
    assert (row.unexpected, row.other_runs) == (1, 1)
    assert not report.ok


def test_json_output_is_valid_json_with_the_verdict(
    builder: LakeBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    builder.produce(at(0))
    builder.produce(at(1), land=False)
    builder.write()

    assert main(["validate", "--json", "--topic", "shop.clicks"]) == EXIT_MISMATCH

    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert data["scope"]["topics"] == ["shop.clicks"]
    assert [m["minute"] for m in data["minutes"] if not m["ok"]] == ["2024-05-01T12:01:00+00:00"]


def test_a_lake_without_a_ledger_exits_two_and_says_to_simulate(
    builder: LakeBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate"]) == EXIT_USAGE
    assert "run `tidelake simulate` first" in capsys.readouterr().err


def test_an_unknown_run_id_is_a_usage_error(
    builder: LakeBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    builder.produce(at(0))
    builder.write()

    assert main(["validate", "--run-id", "nope"]) == EXIT_USAGE
    assert "nope" in capsys.readouterr().err


def test_the_window_keeps_only_events_whose_event_time_is_inside_it(builder: LakeBuilder) -> None:
    builder.produce(at(0))
    builder.produce(at(10), land=False)

    report = check(builder, since=at(0), until=at(5))

    assert report.ok
    assert [m.minute for m in report.minutes] == [at(0)]


def test_rows_of_another_topic_prefix_sharing_the_lake_are_ignored(tmp_path: Path) -> None:
    builder = LakeBuilder(root=tmp_path / "lake", prefix="dev.")
    builder.produce(at(0))
    other_env = LakeBuilder(root=tmp_path / "lake", prefix="ci.")
    other_env.next_offset = 100
    other_env.land(str(uuid.uuid4()), at(0, 30))
    builder.bronze += other_env.bronze

    assert check(builder).ok


def test_a_record_written_twice_by_the_ingest_is_a_doubled_offset(builder: LakeBuilder) -> None:
    event_id = builder.produce(at(0))
    builder.bronze.append(dict(builder.bronze[-1]))

    report = check(builder)

    (issue,) = report.record_issues
    assert (issue.problem, issue.bronze_rows) == ("doubled", 2)
    assert not report.ok
    assert minute_of(report, at(0)).duplicates_seen == 1
    assert event_id


def test_silver_when_present_must_hold_each_landed_event_once() -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    ledger = pa.Table.from_pylist(
        [
            {
                "run_id": "r",
                "topic": CLICKS.name,
                "event_id": e,
                "event_time": at(0),
                "kind": "on_time",
                "partition": 0,
                "offset": i,
                "produced_at": at(0),
            }
            for i, e in enumerate(ids)
        ],
        schema=LEDGER_SCHEMA,
    )
    bronze = [
        {"topic": CLICKS.name, "event_id": e, "event_time": at(0), "partition": 0, "offset": i}
        for i, e in enumerate(ids)
    ]
    silver_ok = [{"topic": CLICKS.name, "event_id": e, "event_time": at(0)} for e in ids]
    silver_dup = [*silver_ok[:2], silver_ok[0]]

    good = compare(ledger, pl.DataFrame(bronze), None, silver=pl.DataFrame(silver_ok))
    bad = compare(ledger, pl.DataFrame(bronze), None, silver=pl.DataFrame(silver_dup))

    assert good.ok and good.minutes[0].silver_distinct == 3
    assert not bad.ok
    assert (bad.minutes[0].silver_distinct, bad.minutes[0].silver_duplicates) == (2, 1)
    assert "silver" in good.render()


# --------------------------------------------------------------------------------------------------
# Silver in the report (silver/<table> written here the way the silver builder would: first
# delivery per event_id wins, plus _deliveries)


def write_silver(
    builder: LakeBuilder,
    *,
    drop: str | None = None,
    extra: Sequence[dict[str, Any]] = (),
) -> None:
    """Silver of the builder's bronze rows, minus the event ``drop``, plus ``extra`` rows."""
    first: dict[str, dict[str, Any]] = {}
    deliveries: dict[str, int] = {}
    for row in sorted(
        builder.bronze, key=lambda r: (r["_ingested_at"], r["_partition"], r["_offset"])
    ):
        deliveries[row["event_id"]] = deliveries.get(row["event_id"], 0) + 1
        first.setdefault(row["event_id"], row)
    rows = [r | {"_deliveries": deliveries[e]} for e, r in first.items() if e != drop]
    rows += [r | {"_deliveries": 1} for r in extra]
    write_deltalake(
        str(builder.root / CLICKS.silver_path),
        pa.Table.from_pylist(rows, schema=CLICKS.silver_schema()),
        partition_by=["event_date", "event_hour"],
        mode="overwrite",
    )


def clicks_of(data: dict[str, Any]) -> dict[str, Any]:
    (clicks,) = [t for t in data["topics"] if t["topic"] == CLICKS.name]
    return clicks


def test_without_silver_validate_says_not_built_and_does_not_fail(
    builder: LakeBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    builder.produce(at(0))
    builder.write()

    assert main(["validate"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "silver: not built yet (run `tidelake refresh`)" in out
    assert "\x1b[" not in out  # captured output is plain text

    assert main(["validate", "--json"]) == EXIT_OK
    clicks = clicks_of(json.loads(capsys.readouterr().out))
    assert clicks["silver_events"] is None
    assert clicks["silver_missing"] is None


def test_silver_holding_every_event_once_is_reported_per_topic_and_exits_zero(
    builder: LakeBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(4):
        builder.produce(at(i % 2, i))
    event_id = builder.produce(at(1, 30))
    builder.produce(at(1, 30), kind=LedgerKind.DUPLICATE, event_id=event_id)
    builder.write()
    write_silver(builder)

    assert main(["validate", "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["silver_topics"] == [CLICKS.name]
    clicks = clicks_of(data)
    assert (clicks["silver_events"], clicks["silver_missing"], clicks["silver_extra"]) == (5, 0, 0)
    assert (clicks["silver_duplicate_ids"], clicks["bronze_not_in_silver"]) == (0, 0)

    assert main(["validate"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "silver/<table>" in out
    assert "not built yet" not in out
    assert "\x1b[" not in out


def test_an_event_missing_from_silver_exits_one_with_its_id(
    builder: LakeBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    builder.produce(at(0))
    lost = builder.produce(at(2, 5))
    builder.write()
    write_silver(builder, drop=lost)

    assert main(["validate"]) == EXIT_MISMATCH
    out = capsys.readouterr().out
    assert f"missing from silver (1): {lost}" in out
    report = reconcile(Lake.from_settings(LakeSettings(uri=str(builder.root))))
    row = minute_of(report, at(2))
    assert (row.missing, row.silver_missing, row.bronze_not_in_silver, row.ok) == (0, 1, 1, False)
    (clicks,) = [t for t in report.topics if t.topic == CLICKS.name]
    assert (clicks.silver_events, clicks.silver_missing, clicks.status) == (1, 1, "MISMATCH")


def test_an_event_twice_in_silver_is_a_duplicate_id_and_a_mismatch(builder: LakeBuilder) -> None:
    builder.produce(at(0))
    builder.write()
    write_silver(builder, extra=[builder.bronze[0]])

    report = reconcile(Lake.from_settings(LakeSettings(uri=str(builder.root))))

    (clicks,) = [t for t in report.topics if t.topic == CLICKS.name]
    assert (clicks.silver_events, clicks.silver_duplicate_ids, clicks.silver_missing) == (1, 1, 0)
    assert report.exit_code == EXIT_MISMATCH


def test_an_event_in_silver_but_not_in_the_ledger_or_bronze_is_extra(builder: LakeBuilder) -> None:
    builder.produce(at(0))
    builder.write()
    phantom = dict(builder.bronze[0]) | {"event_id": "phantom", "_offset": 999}
    write_silver(builder, extra=[phantom])

    report = reconcile(Lake.from_settings(LakeSettings(uri=str(builder.root))))

    (clicks,) = [t for t in report.topics if t.topic == CLICKS.name]
    assert (clicks.silver_extra, clicks.silver_not_in_bronze) == (1, 1)
    assert clicks.silver_extra_sample == ("phantom",)
    assert (clicks.missing, clicks.unexpected) == (0, 0)  # bronze itself is fine
    assert not report.ok
    assert "extra in silver (1): phantom" in report.render()


def test_silver_rows_of_another_topic_prefix_are_ignored(tmp_path: Path) -> None:
    builder = LakeBuilder(root=tmp_path / "lake", prefix="dev.")
    builder.produce(at(0))
    builder.write()
    stranger = dict(builder.bronze[0]) | {"event_id": "ci-event", "_topic": "ci.shop.clicks"}
    write_silver(builder, extra=[stranger])

    assert check(builder).ok


def test_a_topic_without_silver_is_named_as_not_built_beside_one_with_silver() -> None:
    searches = TOPICS["shop.searches"]
    ledger = pl.DataFrame(
        [
            {
                "run_id": "r",
                "topic": t,
                "event_id": f"{t}-1",
                "event_time": at(0),
                "kind": "on_time",
            }
            | {"partition": 0, "offset": 0}
            for t in (CLICKS.name, searches.name)
        ]
    )
    bronze = ledger.select("topic", "event_id", "event_time", "partition", "offset")
    silver = bronze.filter(pl.col("topic") == CLICKS.name).select("topic", "event_id", "event_time")

    report = compare(ledger, bronze, silver=silver, silver_topics=[CLICKS.name])

    assert report.ok
    by_topic = {t.topic: t for t in report.topics}
    assert by_topic[CLICKS.name].silver_events == 1
    assert by_topic[searches.name].silver_events is None
    assert "silver: not built yet (run `tidelake refresh`): shop.searches" in report.render()


def test_render_with_color_styles_the_tables_and_without_it_stays_plain(
    builder: LakeBuilder,
) -> None:
    builder.produce(at(0))
    report = check(builder)

    assert "\x1b[" in report.render(color=True)
    assert "\x1b[" not in report.render()
