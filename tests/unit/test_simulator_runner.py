"""The simulator's runner and CLI, with a fake producer and a temporary local lake."""

from __future__ import annotations

import io
import json
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from tidelake import cli
from tidelake.cli import simulate as simulate_command
from tidelake.cli.simulate import config_from_args
from tidelake.ledger import LEDGER_PATH, LEDGER_SCHEMA, LedgerKind
from tidelake.settings import KafkaSettings, LakeSettings, Settings
from tidelake.simulator import (
    SimulationSummary,
    SimulatorConfig,
    generate_messages,
    producer_config,
    run_simulation,
)

START = datetime(2026, 11, 21, 23, 40, tzinfo=UTC).timestamp()


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class FakeProducer:
    """Records every message and acknowledges it on the next poll/flush, like librdkafka."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        partitions: int = 3,
        fail_topic: str | None = None,
        on_produce: Callable[[int], None] | None = None,
    ) -> None:
        self.clock = clock
        self.partitions = partitions
        self.fail_topic = fail_topic
        self.on_produce = on_produce
        self.next_offset: Counter[tuple[str, int]] = Counter()
        self.queue: list[tuple[Any, tuple[str | None, FakeMessage]]] = []
        self.log: list[dict[str, Any]] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        partition = zlib.crc32(key or b"") % self.partitions
        offset = self.next_offset[topic, partition]
        self.next_offset[topic, partition] += 1
        self.log.append(
            {
                "topic": topic,
                "key": key,
                "value": value,
                "partition": partition,
                "offset": offset,
                "at": self.clock(),
            }
        )
        failed = self.fail_topic is not None and topic.endswith(self.fail_topic)
        msg = FakeMessage(topic, partition, offset)
        self.queue.append((on_delivery, ("broker down" if failed else None, msg)))
        if self.on_produce:
            self.on_produce(len(self.log))

    def poll(self, timeout: float = 0) -> int:
        queue, self.queue = self.queue, []
        for callback, (err, msg) in queue:
            callback(err, msg)
        return len(queue)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0

    def __len__(self) -> int:
        return len(self.queue)


class FakeClock:
    """A clock that only moves when the runner sleeps: paced runs finish instantly."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def settings_for(tmp_path: Path, prefix: str = "") -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers="fake:9092", topic_prefix=prefix),
        lake=LakeSettings(uri=str(tmp_path / "lake")),
    )


def read_ledger(tmp_path: Path) -> list[dict[str, Any]]:
    table = DeltaTable(str(tmp_path / "lake" / LEDGER_PATH)).to_pyarrow_table()
    return table.to_pylist()


def run_paced(
    tmp_path: Path, config: SimulatorConfig, producer: FakeProducer | None = None, **kw: Any
) -> tuple[SimulationSummary, FakeProducer]:
    clock = FakeClock()
    producer = producer if producer is not None else FakeProducer(clock)
    producer.clock = clock
    summary = run_simulation(
        settings_for(tmp_path, kw.pop("prefix", "")),
        config,
        producer=producer,
        clock=clock,
        sleep=clock.sleep,
        progress=kw.pop("progress", False),
        **kw,
    )
    return summary, producer


# ---------------------------------------------------------------------- ledger


def test_the_ledger_records_each_acknowledged_message_with_its_delivery_coordinates(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(seed=3, duration=None, count=600, malformed_fraction=0.05)
    summary, producer = run_paced(tmp_path, config, prefix="dev.")

    rows = read_ledger(tmp_path)
    assert summary.sent == summary.delivered == len(rows) == summary.ledger_rows == 600
    assert summary.ok and summary.failed == 0
    assert {r["run_id"] for r in rows} == {summary.run_id}
    sent = {(p["topic"], p["partition"], p["offset"]): p for p in producer.log}
    for row in rows:
        produced = sent[f"dev.{row['topic']}", row["partition"], row["offset"]]
        if row["kind"] != LedgerKind.MALFORMED:
            doc = json.loads(produced["value"])
            assert (row["event_id"], row["event_type"]) == (doc["event_id"], doc["event_type"])
            assert row["event_time"] == datetime.fromisoformat(doc["event_time"])
            assert row["expected_error"] is None
        else:
            assert row["expected_error"]
    kinds = Counter(r["kind"] for r in rows)
    assert dict(kinds) == summary.by_kind
    assert dict(Counter(r["topic"] for r in rows)) == summary.by_topic
    assert sum(summary.by_expected_error.values()) == kinds[LedgerKind.MALFORMED]


def test_the_ledger_has_the_shared_schema_and_is_partitioned_by_topic(tmp_path: Path) -> None:
    run_paced(tmp_path, SimulatorConfig(seed=1, duration=None, count=50))
    table = DeltaTable(str(tmp_path / "lake" / LEDGER_PATH))
    assert table.metadata().partition_columns == ["topic"]
    schema = table.to_pyarrow_table().schema
    for field in LEDGER_SCHEMA:
        assert schema.field(field.name).type == field.type, field.name


def test_ack_time_is_recorded_as_produced_at(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    run_paced(tmp_path, SimulatorConfig(seed=1, duration=None, count=20))
    after = datetime.now(UTC)
    assert all(before <= r["produced_at"] <= after for r in read_ledger(tmp_path))


def test_delivery_errors_are_counted_kept_out_of_the_ledger_and_fail_the_run(
    tmp_path: Path,
) -> None:
    producer = FakeProducer(fail_topic="shop.clicks")
    config = SimulatorConfig(seed=2, duration=None, count=500)
    summary, _ = run_paced(tmp_path, config, producer=producer)
    clicks = sum(1 for p in producer.log if p["topic"] == "shop.clicks")
    assert clicks and summary.failed == clicks
    assert summary.delivered == 500 - clicks
    assert not summary.ok
    assert all(r["topic"] != "shop.clicks" for r in read_ledger(tmp_path))


def test_the_ledger_is_flushed_in_chunks_during_a_long_run(tmp_path: Path) -> None:
    config = SimulatorConfig(
        seed=4, duration=None, count=1500, rate=200, ledger_flush_rows=200, ledger_flush_seconds=2
    )
    run_paced(tmp_path, config)
    table = DeltaTable(str(tmp_path / "lake" / LEDGER_PATH))
    assert table.version() >= 4
    assert table.to_pyarrow_table().num_rows == 1500


def test_no_ledger_is_written_when_disabled(tmp_path: Path) -> None:
    summary, _ = run_paced(
        tmp_path, SimulatorConfig(seed=1, duration=None, count=30, write_ledger=False)
    )
    assert summary.delivered == 30 and summary.ledger_rows == 0
    assert not (tmp_path / "lake").exists()


# ---------------------------------------------------------------------- pacing and stopping


def test_messages_are_produced_at_their_planned_send_time(tmp_path: Path) -> None:
    config = SimulatorConfig(seed=5, duration=20, rate=30)
    summary, producer = run_paced(tmp_path, config)
    assert summary.delivered == len(producer.log) > 300
    seen: set[str] = set()
    for p in producer.log:
        try:
            doc = json.loads(p["value"])
            planned = datetime.fromisoformat(doc["received_time"]).timestamp()
        except (ValueError, TypeError, KeyError):
            continue  # malformed
        if doc["event_id"] in seen:
            continue  # a duplicate repeats the original's received_time
        seen.add(doc["event_id"])
        assert planned - 0.002 <= p["at"] <= planned + 0.11
    # Held-back messages were waited for after the 20 s of arrivals.
    assert max(p["at"] for p in producer.log) > START + 20 + 25


def test_a_stop_event_ends_an_unbounded_run_and_still_sends_held_back_messages(
    tmp_path: Path,
) -> None:
    stop = threading.Event()
    producer = FakeProducer(on_produce=lambda n: stop.set() if n >= 300 else None)
    config = SimulatorConfig(seed=6, duration=0, late_fraction=0.3)
    summary, _ = run_paced(tmp_path, config, producer=producer, stop_event=stop)
    rows = read_ledger(tmp_path)
    assert summary.delivered == len(rows) == summary.sent >= 300
    planned_late = sum(1 for r in rows if r["kind"] == LedgerKind.LATE)
    assert planned_late > 50
    # Every late event held back at the stop was sent (no arrivals lost in the heap).
    assert summary.sent < 500


def test_pre_generated_messages_can_be_sent_as_fast_as_possible(tmp_path: Path) -> None:
    config = SimulatorConfig.bulk(400)
    producer = FakeProducer()
    summary = run_simulation(
        settings_for(tmp_path),
        config,
        producer=producer,
        messages=list(generate_messages(n=400)),
        progress=False,
    )
    assert summary.delivered == 400 and summary.by_kind == {"on_time": 400}
    assert len(read_ledger(tmp_path)) == 400


def test_progress_lines_show_sent_rate_late_pending_and_delivered(tmp_path: Path) -> None:
    stream = io.StringIO()
    run_paced(
        tmp_path,
        SimulatorConfig(seed=1, duration=5, rate=50),
        progress=True,
        progress_stream=stream,
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 5
    assert all(
        "sent" in line and "/s" in line and "late pending" in line and "delivered" in line
        for line in lines
    )


# ---------------------------------------------------------------------- producer and CLI


def test_the_producer_is_idempotent_acks_all_and_lingers_briefly() -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="b:9092", security_protocol="SSL"))
    conf = producer_config(settings, SimulatorConfig(compression="zstd"))
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    assert conf["linger.ms"] == 20 and conf["compression.type"] == "zstd"
    assert conf["bootstrap.servers"] == "b:9092" and conf["security.protocol"] == "SSL"
    assert conf["message.max.bytes"] > settings.ingest.max_message_bytes


def parse(*argv: str) -> Any:
    return cli.build_parser().parse_args(["simulate", *argv])


def test_the_cli_registers_simulate_with_its_flags() -> None:
    args = parse(
        "--rate=120",
        "--duration=30",
        "--seed=9",
        "--late-fraction=0.2",
        "--late-min-seconds=10",
        "--late-max-seconds=20",
        "--very-late-fraction=0.01",
        "--duplicate-fraction=0.05",
        "--malformed-fraction=0.02",
        "--malformed-reasons=oversized,wrong_type",
        "--topics=shop.clicks,shop.purchases",
        "--compression=zstd",
        "--no-ledger",
        "--no-wait-late",
        "--quiet",
    )
    config = config_from_args(args)
    assert (config.rate, config.duration, config.count, config.seed) == (120, 30, None, 9)
    assert (config.late_fraction, config.late_min_seconds, config.late_max_seconds) == (
        0.2,
        10,
        20,
    )
    assert (config.very_late_min_seconds, config.very_late_max_seconds) == (3600, 6 * 3600)
    assert (config.duplicate_fraction, config.malformed_fraction) == (0.05, 0.02)
    assert [r.value for r in config.malformed_reasons] == ["oversized", "wrong_type"]
    assert config.topics == ("shop.clicks", "shop.purchases")
    assert not config.write_ledger and not config.wait_late
    assert config.compression == "zstd"


def test_the_cli_defaults_are_a_minute_at_fifty_per_second() -> None:
    config = config_from_args(parse())
    assert (config.rate, config.duration, config.count) == (50, 60, None)
    assert (config.late_fraction, config.duplicate_fraction, config.malformed_fraction) == (
        0.1,
        0.02,
        0.01,
    )


def test_count_with_max_rate_runs_to_the_count_with_nothing_broken_by_default() -> None:
    config = config_from_args(parse("--count=1000000", "--max-rate"))
    assert (config.count, config.duration, config.max_rate) == (1_000_000, None, True)
    assert config.late_fraction == config.duplicate_fraction == config.malformed_fraction == 0


def test_without_bootstrap_servers_the_cli_says_how_to_get_a_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert cli.main(["simulate", "--duration=1"]) == 2
    err = capsys.readouterr().err
    assert "KAFKA_BOOTSTRAP_SERVERS" in err and "make dev" in err and "tidelake dev" in err


def test_bad_fractions_are_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert cli.main(["simulate", "--late-fraction=0.9", "--malformed-fraction=0.2"]) == 2
    assert "sum to" in capsys.readouterr().err


def test_a_run_with_delivery_failures_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")

    def fake_run(*args: Any, **kwargs: Any) -> SimulationSummary:
        return SimulationSummary(run_id="r", seed=1, sent=10, delivered=9, failed=1)

    monkeypatch.setattr(simulate_command, "run_simulation", fake_run)
    assert cli.main(["simulate", "--quiet"]) == 1
    assert "not acknowledged" in capsys.readouterr().err
