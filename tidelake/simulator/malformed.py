"""Deliberately broken messages, each breaking exactly one validation rule.

The ingest validator applies the rules in the order of :class:`QuarantineReason` and the first
failing rule wins. So a message meant to fail rule *k* must pass every rule before *k* and break
*k* in a way no reasonable reading of the contract could file under another reason: a
``wrong_type`` message is a valid JSON object with every field present and a valid UUID, and
one field of the wrong JSON type; an ``absurd_timestamp`` is well-formed RFC 3339 with a zone.
Ambiguous breakages are avoided on purpose: no ``NaN``, no booleans as numbers, no ``2.0`` for an
int, no hyphen-less or braced UUIDs (some parsers accept them), no empty strings, no JSON ``null``
documents, no changes of letter case.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from tidelake.contracts import TOPICS, QuarantineReason, TopicContract
from tidelake.simulator.timestamps import format_ms

R = QuarantineReason

INVALID_UTF8_SEQUENCES: tuple[bytes, ...] = (
    b"caf\xe9",  # Latin-1 text pasted into a UTF-8 stream
    b"\xff\xfe\xfd",  # bytes that never occur in UTF-8
    b"\xc3\x28",  # a lead byte followed by a non-continuation byte
    b"\xed\xa0\x80",  # an encoded UTF-16 surrogate, forbidden in UTF-8
)
UNKNOWN_EVENT_TYPES: tuple[str, ...] = ("refund", "test_event", "page_veiw", "heartbeat")
INVALID_TIMESTAMPS: tuple[str, ...] = (
    "yesterday",
    "2026-11-21T23:40:04.004",  # no zone
    "2026-11-21 23:40:04",  # no zone, space separator
    "1763768404004",  # epoch millis as a string
    "2026-13-45T25:61:00Z",  # not a date
    "21/11/2026 23:40",
)
_MARKER = "\u2063BROKEN\u2063"
_MARKER_BYTES = _MARKER.encode()


@dataclass(frozen=True, slots=True)
class Broken:
    """A broken message and what the ledger can still say about it (``None`` = not meaningful)."""

    value: bytes
    reason: QuarantineReason
    event_id: str | None
    event_type: str | None
    event_time_ms: int | None


def reasons_for_topic(contract: TopicContract) -> tuple[QuarantineReason, ...]:
    """The reasons a message of this topic can be made to fail.

    ``out_of_range`` needs a numeric field with a domain rule, which only some topics have.
    ``unrepresentable`` is never produced: it is the decoder's catch-all for a value the bronze
    schema cannot hold that no rule caught, so no message can be built to provoke it.
    """
    producible = tuple(r for r in R if r is not R.UNREPRESENTABLE)
    if contract.non_negative or contract.positive:
        return producible
    return tuple(r for r in producible if r is not R.OUT_OF_RANGE)


def topics_for_reason(reason: QuarantineReason, topics: tuple[str, ...]) -> tuple[str, ...]:
    """The selected topics a message can be broken on for ``reason``."""
    return tuple(t for t in topics if reason in reasons_for_topic(TOPICS[t]))


def break_record(
    rng: random.Random,
    reason: QuarantineReason,
    contract: TopicContract,
    record: dict[str, Any],
    *,
    event_time_ms: int,
    max_message_bytes: int,
) -> Broken:
    """Turn a valid ``record`` (envelope + payload, in contract order) into a message failing
    exactly ``reason``. ``record`` is modified.

    Args:
        rng: the simulator's random source (keeps runs reproducible).
        reason: the rule to break.
        contract: the record's topic.
        record: a valid record; used as the template.
        event_time_ms: the record's event_time in epoch milliseconds.
        max_message_bytes: the ingest limit; ``oversized`` messages exceed it.
    """
    event_id: str | None = record["event_id"]
    event_type: str | None = record["event_type"]
    time_ms: int | None = event_time_ms

    if reason is R.OVERSIZED:
        target = max_message_bytes + rng.randint(1, 4096)
        name = _free_text_field(contract)
        size = len(orjson.dumps(record))
        filler = "lorem ipsum dolor sit amet "
        record[name] = str(record[name]) + (filler * ((target - size) // len(filler) + 1))
        value = orjson.dumps(record)
    elif reason is R.INVALID_UTF8:
        record[_free_text_field(contract)] = _MARKER
        value = orjson.dumps(record).replace(_MARKER_BYTES, rng.choice(INVALID_UTF8_SEQUENCES))
    elif reason is R.MALFORMED_JSON:
        value = _broken_json(rng, record)
    elif reason is R.NOT_AN_OBJECT:
        variant = rng.randrange(3)
        if variant == 0:
            value = orjson.dumps([record])
        elif variant == 1:  # JSON encoded twice: a string holding the object
            value = orjson.dumps(orjson.dumps(record).decode())
        else:
            value = orjson.dumps(rng.randint(1, 10**6))
    elif reason is R.MISSING_FIELD:
        required = [f.name for f in contract.all_fields if not f.nullable]
        name = rng.choice(required)
        del record[name]
        event_id = record.get("event_id")
        event_type = record.get("event_type")
        time_ms = time_ms if "event_time" in record else None
        value = orjson.dumps(record)
    elif reason is R.WRONG_TYPE:
        field = rng.choice([f for f in contract.fields if not f.nullable])
        record[field.name] = _wrong_value(rng, field.kind, record[field.name])
        value = orjson.dumps(record)
    elif reason is R.INVALID_EVENT_ID:
        event_id = _invalid_uuid(rng, record["event_id"])
        record["event_id"] = event_id
        value = orjson.dumps(record)
    elif reason is R.UNKNOWN_EVENT_TYPE:
        others = sorted({t for c in TOPICS.values() for t in c.event_types} - contract.event_types)
        choices = [*UNKNOWN_EVENT_TYPES, *others]
        event_type = rng.choice(choices)
        record["event_type"] = event_type
        value = orjson.dumps(record)
    elif reason is R.INVALID_TIMESTAMP:
        bad = rng.choice(INVALID_TIMESTAMPS)
        if rng.random() < 0.2:
            record["received_time"] = bad
        else:
            record["event_time"] = bad
            time_ms = None
        value = orjson.dumps(record)
    elif reason is R.ABSURD_TIMESTAMP:
        # 1970: a zero epoch from a device with no clock; 2999: a sentinel "never" date.
        year_start_ms = 0 if rng.random() < 0.5 else 32_472_144_000_000  # 2999-01-01
        time_ms = year_start_ms + rng.randrange(365 * 86_400_000)
        record["event_time"] = format_ms(time_ms)
        value = orjson.dumps(record)
    elif reason is R.OUT_OF_RANGE:
        candidates = [*contract.positive, *contract.non_negative]
        if not candidates:
            raise ValueError(f"{contract.name} has no numeric domain rule to break")
        name = rng.choice(candidates)
        if name in contract.positive:
            record[name] = -rng.randint(0, 3)  # 0 or negative
        elif isinstance(record[name], float):
            record[name] = -round(rng.uniform(0.01, 500.0), 2)
        else:
            record[name] = -rng.randint(1, 10)
        value = orjson.dumps(record)
    else:  # pragma: no cover - the enum is exhaustive
        raise ValueError(f"no breakage for {reason!r}")
    return Broken(value, reason, event_id, event_type, time_ms)


def _free_text_field(contract: TopicContract) -> str:
    """A required, non-key string payload field (where junk plausibly ends up)."""
    for f in reversed(contract.fields):
        if f.kind == "string" and not f.nullable and f.name != contract.key_field:
            return f.name
    raise ValueError(f"{contract.name} has no free-text field")  # pragma: no cover


def _wrong_value(rng: random.Random, kind: str, current: Any) -> Any:
    """A value of the wrong JSON type: numbers for strings, strings for numbers."""
    if kind == "string":
        return rng.randint(1, 999_999)
    if kind == "int":
        return rng.choice(("three", str(current), "n/a"))
    return str(current)  # float → "21.5"


def _invalid_uuid(rng: random.Random, valid: str) -> str:
    """Something that looks like an id but is not a UUID in any accepted spelling."""
    variant = rng.randrange(4)
    if variant == 0:
        return valid[:-1]  # one hex digit short
    if variant == 1:
        i = rng.choice([i for i, c in enumerate(valid) if c != "-"])
        return valid[:i] + "g" + valid[i + 1 :]
    if variant == 2:
        return f"evt-{rng.getrandbits(48):012x}"
    return str(rng.randint(1, 10**9))


def _broken_json(rng: random.Random, record: dict[str, Any]) -> bytes:
    """UTF-8 text that is not JSON: truncated, Python repr, or key=value text."""
    variant = rng.randrange(3)
    if variant == 0:
        text = orjson.dumps(record).decode()
        return text[: rng.randint(1, len(text) - 1)].encode()  # any proper prefix of {..} fails
    if variant == 1:
        return repr(record).encode()  # single quotes and None
    return ";".join(f"{k}={v}" for k, v in record.items()).encode()
