"""No record can poison bronze: every hostile record lands in bronze or quarantine, exactly once.

Regression: ``{"results_count": 9223372036854775808}`` passed the type rule (JSON type UBIGINT),
became NULL in a non-nullable bronze column, and made every later Delta write of the topic fail,
so the partition stopped. Each hostile case here is decoded on its own, and end to end through
the engine with a fake Kafka, followed by a second batch of good records on the same partition
that must land too.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from tidelake.contracts import (
    BRONZE_PARTITION_BY,
    QUARANTINE_PATH,
    TOPICS,
    QuarantineReason,
    TopicContract,
)
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import IngestEngine
from tidelake.ingest import decode as decode_module
from tidelake.ingest.decode import ChunkDecoder, RawChunk, conform_representable
from tidelake.ingest.tables import add_missing_columns, ensure_table
from tidelake.lake import Lake
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings

R = QuarantineReason
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NEPAL = timezone(timedelta(hours=5, minutes=45))
GROUP = "poison-test"
DEEP = 100_000
"""Nesting depth of the deep-JSON cases (about 200 kB, under the 256 KiB message limit)."""
SEARCHES, PURCHASES, SENSORS = "shop.searches", "shop.purchases", "infra.sensor_readings"

_PAYLOADS: dict[str, dict[str, Any]] = {
    SEARCHES: {
        "event_type": "search",
        "user_id": "u1",
        "session_id": "s1",
        "query": "red shoes",
        "results_count": 12,
    },
    PURCHASES: {
        "event_type": "purchase",
        "user_id": "u1",
        "session_id": "s1",
        "order_id": "o1",
        "product_id": "p1",
        "quantity": 2,
        "unit_price": 9.5,
        "currency": "EUR",
        "payment_method": "card",
        "ip_address": "10.0.0.1",
    },
    SENSORS: {
        "event_type": "sensor_reading",
        "device_id": "d1",
        "site": "fra1",
        "metric": "temperature",
        "value": 21.5,
        "unit": "C",
    },
}


def record(topic: str, at: datetime, **overrides: Any) -> dict[str, Any]:
    """A valid record of ``topic`` with event_time 30 s before ``at``."""
    doc = {
        "event_id": str(uuid.uuid4()),
        "event_time": (at - timedelta(seconds=30)).isoformat(),
        **_PAYLOADS[topic],
    }
    doc.update(overrides)
    return doc


def good(topic: str, at: datetime) -> bytes:
    return orjson.dumps(record(topic, at))


def with_literal(doc: dict[str, Any], field: str, literal: str) -> bytes:
    """``doc`` as JSON with ``field``'s value replaced by raw JSON text (numbers JSON can't say)."""
    marker = f"__{uuid.uuid4().hex}__"
    text = orjson.dumps({**doc, field: marker}).decode()
    return text.replace(f'"{marker}"', literal).encode()


def with_tail(doc: dict[str, Any], tail: str) -> bytes:
    """``doc`` as JSON with ``tail`` (``,"key":value...``) added before the closing brace."""
    return orjson.dumps(doc)[:-1] + tail.encode() + b"}"


@dataclass(frozen=True)
class Poison:
    """One hostile record and where it must land (``reason`` None: in bronze)."""

    name: str
    topic: str
    value: bytes
    reason: QuarantineReason | None
    detail: str = ""
    key: bytes | None = b"u1"


def poison_records(at: datetime) -> list[Poison]:
    """Every hostile case, with event times near ``at`` (so the engine's clock accepts them)."""
    s, p, d = SEARCHES, PURCHASES, SENSORS
    deep_array = "[" * DEEP + "]" * DEEP
    nepal_time = (at - timedelta(minutes=1)).astimezone(NEPAL).isoformat()
    return [
        Poison(
            "int_2_pow_63",
            s,
            with_literal(record(s, at), "results_count", str(2**63)),
            R.OUT_OF_RANGE,
            "results_count=9223372036854775808 is outside the 64-bit integer range",
        ),
        Poison(
            "int_2_pow_64",
            s,
            with_literal(record(s, at), "results_count", str(2**64)),
            R.OUT_OF_RANGE,
            "results_count=18446744073709551616 is outside the 64-bit integer range",
        ),
        Poison(
            "int_1e30",
            s,
            with_literal(record(s, at), "results_count", "1e30"),
            R.OUT_OF_RANGE,
            "results_count=1e30 is outside the 64-bit integer range",
        ),
        Poison(
            "int_below_int64",
            p,
            with_literal(record(p, at), "quantity", str(-(2**63) - 1)),
            R.OUT_OF_RANGE,
            "quantity=-9223372036854775809 is outside the 64-bit integer range",
        ),
        Poison(
            "int_max_int64_fits",
            s,
            with_literal(record(s, at), "results_count", str(2**63 - 1)),
            None,
        ),
        Poison(
            "int_fraction_is_a_type_error",
            s,
            with_literal(record(s, at), "results_count", "2.5"),
            R.WRONG_TYPE,
            "results_count (expected integer, got double)",
        ),
        Poison(
            "float_1e400",
            p,
            with_literal(record(p, at), "unit_price", "1e400"),
            R.OUT_OF_RANGE,
            "unit_price=inf is not a finite number",
        ),
        Poison(
            "float_minus_1e400",
            p,
            with_literal(record(p, at), "unit_price", "-1e400"),
            R.OUT_OF_RANGE,
            "unit_price=-inf is not a finite number",
        ),
        Poison(
            "float_nan",
            p,
            with_literal(record(p, at), "unit_price", "NaN"),
            R.OUT_OF_RANGE,
            "unit_price=nan is not a finite number",
        ),
        Poison(
            "sensor_value_nan",
            d,
            with_literal(record(d, at), "value", "NaN"),
            R.OUT_OF_RANGE,
            "value=nan is not a finite number",
            key=b"d1",
        ),
        Poison(
            "sensor_value_minus_inf",
            d,
            with_literal(record(d, at), "value", "-1e400"),
            R.OUT_OF_RANGE,
            "value=-inf is not a finite number",
            key=b"d1",
        ),
        Poison(
            "deep_nesting_in_an_unknown_field",
            s,
            with_tail(record(s, at), f',"debug":{deep_array}'),
            None,
        ),
        Poison(
            "deep_nesting_as_the_whole_value",
            s,
            deep_array.encode(),
            R.NOT_AN_OBJECT,
            "array, not an object",
        ),
        Poison(
            "duplicate_contract_key",
            s,
            with_tail(record(s, at), f',"event_id":"{uuid.uuid4()}"'),
            R.MALFORMED_JSON,
            "duplicate key(s) in the object: event_id",
        ),
        Poison(
            "duplicate_unknown_keys",
            s,
            with_tail(record(s, at), ',"b":1,"a":2,"b":3,"a":4'),
            R.MALFORMED_JSON,
            "duplicate key(s) in the object: a, b",
        ),
        Poison("extra_unknown_key", s, with_tail(record(s, at), ',"coupon":"X"'), None),
        Poison("nul_in_a_string", s, orjson.dumps(record(s, at, query="x\u0000y")), None),
        Poison(
            "lone_surrogate",
            s,
            with_literal(record(s, at), "query", '"\\ud800"'),
            R.MALFORMED_JSON,
            "not valid JSON",
        ),
        Poison(
            "event_time_offset_plus_0545",
            s,
            orjson.dumps(record(s, at, event_time=nepal_time)),
            None,
        ),
        Poison(
            "event_time_without_seconds",
            s,
            orjson.dumps(record(s, at, event_time=at.strftime("%Y-%m-%dT%H:%MZ"))),
            R.INVALID_TIMESTAMP,
            "is not RFC 3339",
        ),
        Poison("empty_key", s, good(s, at), None, key=b""),
        Poison("no_key", s, good(s, at), None, key=None),
        Poison("binary_key", s, good(s, at), None, key=b"\xff\x00\xfe"),
        Poison(
            "binary_key_of_a_quarantined_record",
            s,
            b"{not json",
            R.MALFORMED_JSON,
            "not valid JSON",
            key=b"\xc3\x28",
        ),
    ]


CASES = poison_records(NOW)


def chunk_of(topic: str, values: list[bytes], keys: list[bytes | None]) -> RawChunk:
    n = len(values)
    return RawChunk(
        topic=topic,
        partitions=np.zeros(n, dtype=np.int32),
        offsets=np.arange(n, dtype=np.int64),
        timestamps_ms=np.full(n, int(NOW.timestamp() * 1000), dtype=np.int64),
        keys=keys,
        values=list(values),
    )


def decode(
    topic: str, values: list[bytes], keys: list[bytes | None] | None = None, **kw: Any
) -> Any:
    decoder = ChunkDecoder(TOPICS[topic], threads=1, **kw)
    try:
        return decoder.decode(chunk_of(topic, values, keys or [b"k"] * len(values)), NOW)
    finally:
        decoder.close()


def landed(out: Any) -> dict[int, str | None]:
    """Offset → reason (None for bronze), asserting that no offset comes out twice."""
    valid = out.valid.column("_offset").to_pylist()
    invalid = out.invalid.column("_offset").to_pylist()
    assert len(set(valid + invalid)) == len(valid) + len(invalid), "an offset came out twice"
    return dict.fromkeys(valid) | dict(
        zip(invalid, out.invalid.column("error").to_pylist(), strict=True)
    )


# -- the decoder --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_poison_record_lands_in_bronze_or_quarantine_with_its_reason(case: Poison) -> None:
    # Between two good records, so a poison record cannot take its neighbours with it.
    values = [good(case.topic, NOW), case.value, good(case.topic, NOW)]
    out = decode(case.topic, values, [b"k", case.key, b"k"])
    expected = None if case.reason is None else case.reason.value
    assert landed(out) == {0: None, 1: expected, 2: None}
    if case.reason is not None:
        row = out.invalid.to_pylist()[0]
        assert case.detail in row["error_detail"]
        assert (row["raw"], row["key"]) == (case.value, case.key)
    assert out.valid.schema.equals(TOPICS[case.topic].bronze_schema())
    out.valid.validate(full=True)


def test_a_json_integer_that_fits_int64_keeps_its_exact_value() -> None:
    out = decode(SEARCHES, [with_literal(record(SEARCHES, NOW), "results_count", str(2**63 - 1))])
    assert out.valid.column("results_count").to_pylist() == [2**63 - 1]


def test_an_integral_double_too_big_for_int64_is_out_of_range_not_a_type_error() -> None:
    values = [
        with_literal(record(SEARCHES, NOW), "results_count", "9.3e18"),
        with_literal(record(SEARCHES, NOW), "results_count", "NaN"),
    ]
    out = decode(SEARCHES, values)
    assert out.invalid.column("error").to_pylist() == [R.OUT_OF_RANGE.value, R.WRONG_TYPE.value]


def test_a_non_finite_float_is_reported_once_not_also_as_a_broken_domain_rule() -> None:
    out = decode(PURCHASES, [with_literal(record(PURCHASES, NOW), "unit_price", "-1e400")])
    assert out.invalid.column("error_detail").to_pylist() == [
        "unit_price=-inf is not a finite number"
    ]


def test_an_event_time_with_a_quarter_hour_offset_lands_in_its_utc_hour() -> None:
    doc = record(SEARCHES, NOW, event_time="2026-11-21T05:40:00+05:45")
    row = decode(SEARCHES, [orjson.dumps(doc)]).valid.to_pylist()[0]
    assert row["event_time"] == datetime(2026, 11, 20, 23, 55, tzinfo=UTC)
    assert (row["event_date"].isoformat(), row["event_hour"]) == ("2026-11-20", 23)


def test_an_event_time_without_seconds_is_an_invalid_timestamp_with_a_detail() -> None:
    doc = record(SEARCHES, NOW, event_time="2026-12-01T10:00Z")
    row = decode(SEARCHES, [orjson.dumps(doc)]).invalid.to_pylist()[0]
    assert row["error"] == R.INVALID_TIMESTAMP.value
    assert row["error_detail"].startswith("event_time=2026-12-01T10:00Z is not RFC 3339")
    assert "HH:MM:SS" in row["error_detail"]


def test_keys_land_as_text_or_base64_with_a_flag_saying_which() -> None:
    keys: list[bytes | None] = [b"u1", b"", None, b"\xff\x00\xfe", b"caf\xc3\xa9"]
    out = decode(SEARCHES, [good(SEARCHES, NOW) for _ in keys], keys)
    assert out.valid.column("_key").to_pylist() == [
        "u1",
        "",
        None,
        base64.b64encode(b"\xff\x00\xfe").decode(),
        "café",
    ]
    assert out.valid.column("_key_base64").to_pylist() == [False, False, False, True, False]


def _key_json(key: str, rng: random.Random) -> str:
    """``key`` as a JSON string, sometimes with ``_`` written as the escape ``\\u005f``."""
    text = json.dumps(key)
    return text.replace("_", "\\u005f") if rng.random() < 0.3 else text


def test_duplicate_keys_are_found_whatever_the_values_spelling_and_spacing() -> None:
    # The duplicate check skips objects that provably have none (by counting quotes), so it is
    # checked against Python's own view of the top-level pairs on varied, tricky objects.
    rng = random.Random(11)
    extra_values = ['"x"', '"say \\"hi\\""', "1", "null", '{"event_id": "y", "q": "z"}', "[1]"]
    values, expected = [], []
    for _ in range(600):
        pairs = [(k, json.dumps(v)) for k, v in record(SEARCHES, NOW).items()]
        for _ in range(rng.randrange(3)):
            name = rng.choice([*(k for k, _ in pairs), "coupon", "debug"])
            pairs.insert(rng.randrange(len(pairs) + 1), (name, rng.choice(extra_values)))
        sep = rng.choice([",", " , ", ",\n"])
        text = "{" + sep.join(f"{_key_json(k, rng)}:{v}" for k, v in pairs) + "}"
        names = [k for k, _ in json.loads(text, object_pairs_hook=lambda kv: kv)]
        values.append(text.encode())
        expected.append(R.MALFORMED_JSON.value if len(set(names)) < len(names) else None)
    got = landed(decode(SEARCHES, values))
    assert [got[i] for i in range(len(values))] == expected
    assert 100 < expected.count(None) < 500


# -- the catch-all: unrepresentable ------------------------------------------------------------


def _bypass_rules(decoder: ChunkDecoder, replace: str) -> None:
    """Make ``decoder`` accept records the rules reject and rewrite output columns, as a gap in
    the rules would: only row 1 keeps the reason the query gave it."""
    decoder._query = (
        "SELECT * REPLACE (CASE WHEN idx = 1 THEN error END AS error, "
        f"{replace}) FROM ({decoder._query}) q"
    )


def test_values_the_bronze_schema_cannot_hold_are_quarantined_as_unrepresentable() -> None:
    decoder = ChunkDecoder(TOPICS[SEARCHES], threads=1)
    # Row 2: NULL in a non-nullable column; row 3: a uint64 no int64 column can hold.
    _bypass_rules(
        decoder,
        "CASE idx WHEN 2 THEN NULL WHEN 3 THEN CAST(18446744073709551615 AS UBIGINT) "
        "ELSE CAST(results_count AS UBIGINT) END AS results_count",
    )
    values = [good(SEARCHES, NOW), b"{oops", good(SEARCHES, NOW), good(SEARCHES, NOW)]
    values.append(good(SEARCHES, NOW))
    try:
        out = decoder.decode(chunk_of(SEARCHES, values, [b"k"] * 5), NOW)
    finally:
        decoder.close()
    unrep = R.UNREPRESENTABLE.value
    assert landed(out) == {0: None, 1: "malformed_json", 2: unrep, 3: unrep, 4: None}
    assert out.valid.column("_offset").to_pylist() == [0, 4]
    assert out.invalid.column("_offset").to_pylist() == [1, 2, 3]
    details = out.invalid.column("error_detail").to_pylist()
    assert details[0] == "value is not valid JSON"
    assert details[1] == (
        "value the bronze schema cannot hold: results_count: null in a non-nullable int64 column"
    )
    assert details[2].startswith("value the bronze schema cannot hold: results_count: ")
    assert "18446744073709551615" in details[2]
    assert out.invalid.column("raw").to_pylist() == values[1:4]
    assert out.valid.schema.equals(TOPICS[SEARCHES].bronze_schema())


def test_invalid_utf8_in_a_string_column_is_left_out_and_named() -> None:
    schema = pa.schema([pa.field("query", pa.string(), nullable=False)])
    data = b"okbad\xffok"
    offsets = np.array([0, 2, 6, 8], dtype=np.int32)
    col = pa.Array.from_buffers(pa.string(), 3, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    kept, problems = conform_representable(pa.table({"query": col}), schema)
    assert kept.column("query").to_pylist() == ["ok", "ok"]
    assert list(problems) == [1]
    assert problems[1].startswith("value the bronze schema cannot hold: query: ")
    assert "Invalid UTF8 sequence" in problems[1]


def test_a_table_the_schema_can_hold_is_only_cast() -> None:
    schema = pa.schema([pa.field("n", pa.int64(), nullable=False), pa.field("s", pa.string())])
    table = pa.table(
        {"n": pa.array([1, 2], pa.int32()), "s": pa.array(["a", None], pa.large_string())}
    )
    kept, problems = conform_representable(table, schema)
    assert problems == {} and kept.schema.equals(schema) and kept.num_rows == 2


# -- end to end through the engine ----------------------------------------------------------------


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))


def engine_for(kafka: FakeKafka, lake: Lake) -> IngestEngine:
    return IngestEngine(
        lake,
        KafkaSettings(consumer_group=GROUP),
        IngestSettings(quiet_seconds=0.05),
        consumer_factory=kafka.consumer_factory,
    )


def read(lake: Lake, relative: str) -> pa.Table:
    return DeltaTable(lake.uri(relative)).to_pyarrow_table()


def landed_in_lake(lake: Lake, contract: TopicContract) -> dict[int, str | None]:
    """Offset (partition 0) → reason (None for bronze), asserting no offset landed twice."""
    bronze = read(lake, contract.bronze_path)
    quarantine = read(lake, QUARANTINE_PATH).filter(
        pa.compute.equal(pa.compute.field("_topic"), contract.name)
    )
    valid = bronze.column("_offset").to_pylist()
    invalid = quarantine.column("_offset").to_pylist()
    assert len(set(valid + invalid)) == len(valid) + len(invalid), "an offset landed twice"
    return dict.fromkeys(valid) | dict(
        zip(invalid, quarantine.column("error").to_pylist(), strict=True)
    )


def run_poison_then_good(
    kafka: FakeKafka, lake: Lake, topic: str, cases: list[Poison]
) -> dict[int, str | None]:
    """Produce ``cases`` on partition 0 and ingest; then good records, ingest again."""
    contract = TOPICS[topic]
    kafka.create_topic(topic, partitions=1)
    for case in cases:
        kafka.produce(topic, case.value, key=case.key, partition=0)
    first = engine_for(kafka, lake).ingest_topic(contract)
    assert first.records == len(cases)
    # The partition keeps flowing: the next batch on the same partition lands too.
    for _ in range(5):
        kafka.produce(topic, good(topic, datetime.now(UTC)), key=b"u1", partition=0)
    second = engine_for(kafka, lake).ingest_topic(contract)
    assert (second.records, second.valid) == (5, 5)
    assert (
        DeltaTable(lake.uri(contract.bronze_path)).transaction_version(f"{GROUP}/{topic}/0")
        == len(cases) + 5
    )
    return landed_in_lake(lake, contract)


@pytest.mark.parametrize("topic", [SEARCHES, PURCHASES, SENSORS])
def test_poison_records_do_not_stop_the_partition_and_each_offset_lands_once(
    lake: Lake, topic: str
) -> None:
    kafka = FakeKafka()
    cases = [c for c in poison_records(datetime.now(UTC)) if c.topic == topic]
    got = run_poison_then_good(kafka, lake, topic, cases)
    expected = {i: (None if c.reason is None else c.reason.value) for i, c in enumerate(cases)}
    expected |= dict.fromkeys(range(len(cases), len(cases) + 5))
    assert got == expected


def test_a_nul_character_and_binary_keys_survive_the_delta_write(lake: Lake) -> None:
    kafka = FakeKafka()
    at = datetime.now(UTC)
    cases = [
        Poison("nul", SEARCHES, orjson.dumps(record(SEARCHES, at, query="x\u0000y")), None),
        Poison("binary_key", SEARCHES, good(SEARCHES, at), None, key=b"\xff\x00\xfe"),
        Poison("empty_key", SEARCHES, good(SEARCHES, at), None, key=b""),
        Poison("bad_with_binary_key", SEARCHES, b"{oops", R.MALFORMED_JSON, key=b"\xff"),
    ]
    run_poison_then_good(kafka, lake, SEARCHES, cases)
    bronze = read(lake, TOPICS[SEARCHES].bronze_path).sort_by("_offset").to_pylist()
    assert bronze[0]["query"] == "x\x00y"
    assert (bronze[1]["_key"], bronze[1]["_key_base64"]) == ("/wD+", True)
    assert (bronze[2]["_key"], bronze[2]["_key_base64"]) == ("", False)
    assert all(row["_key_base64"] is False for row in bronze[3:])
    quarantine = read(lake, QUARANTINE_PATH).to_pylist()
    assert [(q["_offset"], q["key"]) for q in quarantine] == [(3, b"\xff")]


def test_a_rule_gap_is_quarantined_by_the_engine_instead_of_failing_the_write(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    real: Callable[..., str] = decode_module.build_query

    def without_rules(contract: TopicContract, max_future_seconds: float) -> str:
        # Every record passes the SQL rules, and the JSON number 2**63 comes out as NULL, which
        # is what the decoder did before the int64 rule existed.
        query = real(contract, max_future_seconds)
        return f"SELECT * REPLACE (CAST(NULL AS VARCHAR) AS error) FROM ({query}) q"

    monkeypatch.setattr(decode_module, "build_query", without_rules)
    at = datetime.now(UTC)
    cases = [
        Poison("fine", SEARCHES, good(SEARCHES, at), None),
        Poison(
            "too_big",
            SEARCHES,
            with_literal(record(SEARCHES, at), "results_count", str(2**63)),
            R.UNREPRESENTABLE,
        ),
    ]
    got = run_poison_then_good(FakeKafka(), lake, SEARCHES, cases)
    assert got == {0: None, 1: "unrepresentable"} | dict.fromkeys(range(2, 7))
    (detail,) = read(lake, QUARANTINE_PATH).column("error_detail").to_pylist()
    # The bypass also blanks event_time (the query types it only for valid rows): listed too.
    assert detail.startswith("value the bronze schema cannot hold: ")
    assert "results_count: null in a non-nullable int64 column" in detail


# -- migrating bronze tables created before _key_base64 ---------------------------------------


def test_a_bronze_table_created_before_key_base64_gains_the_column_and_keeps_its_rows(
    lake: Lake,
) -> None:
    contract = TOPICS[SEARCHES]
    new_schema = contract.bronze_schema()
    old_schema = pa.schema([f for f in new_schema if f.name != "_key_base64"])
    at = datetime.now(UTC)
    DeltaTable.create(
        lake.uri(contract.bronze_path), schema=old_schema, partition_by=list(BRONZE_PARTITION_BY)
    )
    old = decode(SEARCHES, [good(SEARCHES, NOW)]).valid.drop_columns(["_key_base64"])
    write_deltalake(lake.uri(contract.bronze_path), old.cast(old_schema), mode="append")

    kafka = FakeKafka()
    kafka.create_topic(SEARCHES, partitions=1)
    kafka.produce(SEARCHES, good(SEARCHES, at), key=b"\xfe", partition=0)
    report = engine_for(kafka, lake).ingest_topic(contract)
    assert report.valid == 1

    table = DeltaTable(lake.uri(contract.bronze_path))
    field = next(f for f in table.schema().fields if f.name == "_key_base64")
    assert field.nullable
    rows = table.to_pyarrow_table().to_pylist()
    flags = sorted((r["_key_base64"] is None, r["_key"]) for r in rows)
    assert flags == [(False, "/g=="), (True, "k")]


def test_migration_adds_nothing_to_a_current_table_and_refuses_a_non_nullable_column(
    lake: Lake,
) -> None:
    schema = pa.schema([pa.field("a", pa.int64(), nullable=False)])
    table = ensure_table(lake, "t", schema, (), "a test table")
    version = table.version()
    assert add_missing_columns(table, schema).version() == version
    wider = pa.schema([*schema, pa.field("b", pa.bool_(), nullable=False)])
    with pytest.raises(Exception, match="non-nullable column"):
        add_missing_columns(table, wider, "t")
    nullable = pa.schema([*schema, pa.field("b", pa.bool_(), nullable=True)])
    assert [f.name for f in add_missing_columns(table, nullable).schema().fields] == ["a", "b"]
