"""Bulk decode and validation: every record comes out exactly once, valid or with its reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from tidelake.contracts import TOPICS, QuarantineReason
from tidelake.ingest.decode import ChunkDecoder, RawChunk, _binary_array

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
R = QuarantineReason


def purchase(**overrides: Any) -> dict[str, Any]:
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "purchase",
        "event_time": "2026-11-21T11:59:30.250Z",
        "received_time": "2026-11-21T11:59:31Z",
        "user_id": "u1",
        "session_id": "s1",
        "order_id": "o1",
        "product_id": "p1",
        "quantity": 2,
        "unit_price": 9.5,
        "currency": "EUR",
        "payment_method": "card",
        "ip_address": "10.0.0.1",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


def chunk_of(values: list[bytes | None], topic: str = "shop.purchases") -> RawChunk:
    n = len(values)
    return RawChunk(
        topic=topic,
        partitions=np.zeros(n, dtype=np.int32),
        offsets=np.arange(n, dtype=np.int64),
        timestamps_ms=np.full(n, int(NOW.timestamp() * 1000), dtype=np.int64),
        keys=[b"u1"] * n,
        values=values,
    )


def decode(values: list[bytes | None], topic: str = "shop.purchases", **kw: Any) -> Any:
    decoder = ChunkDecoder(TOPICS[topic], **kw)
    try:
        return decoder.decode(chunk_of(values, topic), NOW)
    finally:
        decoder.close()


def test_a_valid_purchase_becomes_one_typed_bronze_row_with_its_kafka_coordinates() -> None:
    out = decode([orjson.dumps(purchase(event_id="6f1c1f7e-6a52-4a0c-8f0e-2f3f5b1a9c11"))])
    assert out.invalid.num_rows == 0
    assert out.valid.schema.equals(TOPICS["shop.purchases"].bronze_schema())
    row = out.valid.to_pylist()[0]
    assert row["event_id"] == "6f1c1f7e-6a52-4a0c-8f0e-2f3f5b1a9c11"
    assert row["event_time"] == datetime(2026, 11, 21, 11, 59, 30, 250000, tzinfo=UTC)
    assert row["quantity"] == 2 and row["unit_price"] == 9.5
    assert (row["_topic"], row["_partition"], row["_offset"], row["_key"], row["_key_base64"]) == (
        "shop.purchases",
        0,
        0,
        "u1",
        False,
    )
    assert row["_ingested_at"] == NOW


def test_the_hour_partition_is_the_utc_hour_of_event_time_whatever_the_zone() -> None:
    out = decode([orjson.dumps(purchase(event_time="2026-11-22T01:30:00+02:00"))])
    row = out.valid.to_pylist()[0]
    assert row["event_date"].isoformat() == "2026-11-21"
    assert row["event_hour"] == 23


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (b'{"event_id": "broken', R.MALFORMED_JSON, "not valid JSON"),
        (b"\xff\xfe\xfa", R.INVALID_UTF8, "UTF-8"),
        (None, R.INVALID_UTF8, "empty"),
        (b"[1, 2, 3]", R.NOT_AN_OBJECT, "array"),
        (orjson.dumps(purchase(user_id=...)), R.MISSING_FIELD, "user_id"),
        (orjson.dumps(purchase(order_id=None)), R.MISSING_FIELD, "order_id"),
        (orjson.dumps(purchase(quantity="three")), R.WRONG_TYPE, "quantity (expected integer"),
        (orjson.dumps(purchase(quantity=2.5)), R.WRONG_TYPE, "quantity"),
        (orjson.dumps(purchase(user_id=42)), R.WRONG_TYPE, "user_id (expected string"),
        (orjson.dumps(purchase(event_id="not-a-uuid")), R.INVALID_EVENT_ID, "not-a-uuid"),
        (orjson.dumps(purchase(event_type="refund")), R.UNKNOWN_EVENT_TYPE, "refund"),
        (orjson.dumps(purchase(event_time="yesterday")), R.INVALID_TIMESTAMP, "yesterday"),
        (
            orjson.dumps(purchase(event_time="2026-11-21T11:59:30")),
            R.INVALID_TIMESTAMP,
            "with a zone",
        ),
        (
            orjson.dumps(purchase(received_time="2026-13-45T99:00:00Z")),
            R.INVALID_TIMESTAMP,
            "received_time",
        ),
        (
            orjson.dumps(purchase(event_time="1970-01-01T00:00:00Z")),
            R.ABSURD_TIMESTAMP,
            "1970",
        ),
        (
            orjson.dumps(purchase(event_time="2999-01-01T00:00:00Z")),
            R.ABSURD_TIMESTAMP,
            "2999",
        ),
        (orjson.dumps(purchase(quantity=0)), R.OUT_OF_RANGE, "quantity must be > 0"),
        (orjson.dumps(purchase(unit_price=-1.0)), R.OUT_OF_RANGE, "unit_price must be >= 0"),
        (
            orjson.dumps(purchase(quantity=2**63)),
            R.OUT_OF_RANGE,
            "quantity=9223372036854775808 is outside the 64-bit integer range",
        ),
        (
            orjson.dumps(purchase(event_time="2026-11-21T11:59Z")),
            R.INVALID_TIMESTAMP,
            "event_time=2026-11-21T11:59Z is not RFC 3339 with a zone",
        ),
    ],
)
def test_each_broken_record_is_quarantined_with_its_reason_and_explanation(
    value: bytes | None, reason: QuarantineReason, detail: str
) -> None:
    out = decode([value])
    assert out.valid.num_rows == 0
    row = out.invalid.to_pylist()[0]
    assert row["error"] == reason.value
    assert detail in row["error_detail"]
    assert row["raw"] == value
    assert row["key"] == b"u1"


def test_an_oversized_message_is_quarantined_without_being_parsed() -> None:
    big = orjson.dumps(purchase(ip_address="x" * 2000))
    out = decode([big], max_message_bytes=1000)
    assert out.invalid.column("error").to_pylist() == [R.OVERSIZED.value]
    assert out.invalid.column("raw").to_pylist() == [big]


def test_an_event_time_slightly_in_the_future_is_accepted_but_a_day_ahead_is_absurd() -> None:
    soon = (NOW + timedelta(minutes=5)).isoformat()
    far = (NOW + timedelta(days=2)).isoformat()
    out = decode([orjson.dumps(purchase(event_time=soon)), orjson.dumps(purchase(event_time=far))])
    assert out.valid.num_rows == 1
    assert out.invalid.column("error").to_pylist() == [R.ABSURD_TIMESTAMP.value]


def test_the_first_failing_rule_in_reason_order_wins() -> None:
    both = orjson.dumps(purchase(user_id=..., event_id="nope", event_type="refund"))
    assert decode([both]).invalid.column("error").to_pylist() == [R.MISSING_FIELD.value]


def test_a_float_field_accepts_a_json_integer_and_unknown_extra_fields_are_ignored() -> None:
    out = decode([orjson.dumps(purchase(unit_price=3, coupon="XMAS"))])
    assert out.valid.column("unit_price").to_pylist() == [3.0]


def test_nullable_fields_may_be_null_or_absent() -> None:
    view = {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "event_time": "2026-11-21T11:00:00Z",
        "user_id": "u",
        "session_id": "s",
        "product_id": None,
        "page": "/",
        "device": "mobile",
    }
    out = decode([orjson.dumps(view)], topic="shop.page_views")
    assert out.invalid.num_rows == 0
    row = out.valid.to_pylist()[0]
    assert row["product_id"] is None and row["referrer"] is None and row["received_time"] is None


def test_every_record_of_a_mixed_chunk_comes_out_exactly_once_in_offset_order() -> None:
    values: list[bytes | None] = []
    for i in range(3000):
        if i % 7 == 0:
            values.append(b"{not json")
        elif i % 11 == 0:
            values.append(orjson.dumps(purchase(quantity="x")))
        else:
            values.append(orjson.dumps(purchase(quantity=i + 1)))
    out = decode(values)
    valid_offsets = out.valid.column("_offset").to_pylist()
    invalid_offsets = out.invalid.column("_offset").to_pylist()
    assert sorted(valid_offsets + invalid_offsets) == list(range(3000))
    assert valid_offsets == sorted(valid_offsets)
    # the valid rows kept their own payload (no row got another record's values)
    assert out.valid.column("quantity").to_pylist() == [o + 1 for o in valid_offsets]


def test_a_key_that_is_not_utf8_is_kept_as_base64_and_does_not_invalidate_the_record() -> None:
    chunk = chunk_of([orjson.dumps(purchase())])
    chunk.keys = [b"\xff\xfe"]
    decoder = ChunkDecoder(TOPICS["shop.purchases"])
    out = decoder.decode(chunk, NOW)
    assert out.valid.num_rows == 1
    assert out.valid.column("_key").to_pylist() == ["//4="]
    assert out.valid.column("_key_base64").to_pylist() == [True]


def test_unrepresentable_is_the_last_reason_so_every_known_rule_is_tried_first() -> None:
    assert list(QuarantineReason)[-1] is R.UNREPRESENTABLE


def test_binary_array_keeps_nulls_and_bytes_exactly() -> None:
    arr = _binary_array([b"a", None, b"", b"\x00\xff"])
    assert arr.to_pylist() == [b"a", None, b"", b"\x00\xff"]
