"""The simulator's generator: reproducible, contract-true, with the configured share of trouble."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from tidelake.contracts import TOPICS, QuarantineReason, TopicContract
from tidelake.ledger import LedgerKind
from tidelake.settings import ConfigError
from tidelake.simulator import (
    EventSimulator,
    PlannedMessage,
    SimulatorConfig,
    generate_messages,
    random_uuid4,
)

START = datetime(2026, 11, 21, 23, 40, tzinfo=UTC).timestamp()
MAX_BYTES = 256 * 1024
RFC3339_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def plan(**overrides: Any) -> list[PlannedMessage]:
    """All messages of a seeded, count-bounded run on a fixed timeline."""
    options: dict[str, Any] = {"seed": 7, "duration": None, "count": 3000}
    options.update(overrides)
    return list(EventSimulator(SimulatorConfig(**options), start=START))


def valid(messages: list[PlannedMessage]) -> list[PlannedMessage]:
    return [m for m in messages if m.kind is not LedgerKind.MALFORMED]


def first_failing_rule(
    value: bytes, contract: TopicContract, now: datetime
) -> QuarantineReason | None:
    """An independent, plain-Python reading of the contract's rules, applied in enum order."""
    r = QuarantineReason
    if len(value) > MAX_BYTES:
        return r.OVERSIZED
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return r.INVALID_UTF8
    try:
        doc = json.loads(text)
    except ValueError:
        return r.MALFORMED_JSON
    if not isinstance(doc, dict):
        return r.NOT_AN_OBJECT
    fields = contract.all_fields
    if any(not f.nullable and doc.get(f.name) is None for f in fields):
        return r.MISSING_FIELD
    for f in fields:
        v = doc.get(f.name)
        if v is None:
            continue
        ok = {
            "string": isinstance(v, str),
            "timestamp": isinstance(v, str),
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, int | float) and not isinstance(v, bool),
        }[f.kind]
        if not ok:
            return r.WRONG_TYPE
    if not UUID_RE.match(doc["event_id"]):
        return r.INVALID_EVENT_ID
    if doc["event_type"] not in contract.event_types:
        return r.UNKNOWN_EVENT_TYPE
    times = {}
    for name in ("event_time", "received_time"):
        raw = doc.get(name)
        if raw is None:
            continue
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return r.INVALID_TIMESTAMP
        if not RFC3339_RE.match(raw) or parsed.tzinfo is None:
            return r.INVALID_TIMESTAMP
        times[name] = parsed
    if not (datetime(2000, 1, 1, tzinfo=UTC) <= times["event_time"] <= now + timedelta(days=1)):
        return r.ABSURD_TIMESTAMP
    if any(doc[n] < 0 for n in contract.non_negative) or any(
        doc[n] <= 0 for n in contract.positive
    ):
        return r.OUT_OF_RANGE
    return None


# ---------------------------------------------------------------------- reproducibility


def test_the_same_seed_and_start_give_byte_identical_messages() -> None:
    first, second = plan(), plan()
    assert [(m.topic, m.key, m.value, m.kind, m.send_at) for m in first] == [
        (m.topic, m.key, m.value, m.kind, m.send_at) for m in second
    ]


def test_a_different_seed_gives_different_event_ids() -> None:
    ids_a = {m.event_id for m in plan(seed=1, count=200)}
    ids_b = {m.event_id for m in plan(seed=2, count=200)}
    assert not ids_a & ids_b


def test_event_ids_are_version_4_uuids_drawn_from_the_seeded_generator() -> None:
    import random
    import uuid

    a, b = random.Random(3), random.Random(3)
    for _ in range(500):
        assert random_uuid4(a) == str(uuid.UUID(int=b.getrandbits(128), version=4))


def test_a_run_without_a_seed_reports_the_seed_it_drew_so_it_can_be_replayed() -> None:
    sim = EventSimulator(SimulatorConfig(duration=None, count=50), start=START)
    first = [m.value for m in sim]
    again = EventSimulator(SimulatorConfig(duration=None, count=50, seed=sim.seed), start=START)
    assert [m.value for m in again] == first


# ---------------------------------------------------------------------- the contract


def test_every_valid_message_matches_its_topic_contract() -> None:
    messages = valid(plan(count=5000, very_late_fraction=0.05))
    assert {m.topic for m in messages} == set(TOPICS)
    for m in messages:
        contract = TOPICS[m.topic]
        doc = json.loads(m.value)
        assert first_failing_rule(m.value, contract, datetime.now(UTC)) is None, doc
        assert list(doc)[:4] == ["event_id", "event_type", "event_time", "received_time"]
        assert set(doc) == {f.name for f in contract.all_fields}
        assert doc["event_type"] in contract.event_types
        assert RFC3339_MS_Z.match(doc["event_time"]) and RFC3339_MS_Z.match(doc["received_time"])
        assert m.key == doc[contract.key_field].encode()
        assert (m.event_id, m.event_type) == (doc["event_id"], doc["event_type"])
        assert m.event_time == datetime.fromisoformat(doc["event_time"])


def test_received_time_is_the_send_time_and_never_before_event_time() -> None:
    for m in valid(plan(count=2000)):
        doc = json.loads(m.value)
        received = datetime.fromisoformat(doc["received_time"]).timestamp()
        assert m.kind is LedgerKind.DUPLICATE or abs(received - m.send_at) < 0.001
        assert received >= datetime.fromisoformat(doc["event_time"]).timestamp()


def test_nullable_fields_are_sometimes_null_and_sometimes_set() -> None:
    views = [json.loads(m.value) for m in valid(plan(count=3000)) if m.topic == "shop.page_views"]
    for name in ("product_id", "referrer"):
        values = [v[name] for v in views]
        assert None in values and any(x is not None for x in values), name


def test_messages_come_out_in_send_order() -> None:
    sends = [m.send_at for m in plan(count=4000)]
    assert sends == sorted(sends)


# ---------------------------------------------------------------------- kinds and fractions


def test_message_kinds_follow_the_configured_fractions() -> None:
    messages = plan(
        count=6000,
        late_fraction=0.10,
        very_late_fraction=0.05,
        duplicate_fraction=0.04,
        malformed_fraction=0.03,
    )
    kinds = Counter(m.kind for m in messages)
    n = len(messages)
    assert n == 6000
    assert kinds[LedgerKind.LATE] / n == pytest.approx(0.15, abs=0.015)
    assert kinds[LedgerKind.DUPLICATE] / n == pytest.approx(0.04, abs=0.01)
    assert kinds[LedgerKind.MALFORMED] / n == pytest.approx(0.03, abs=0.01)


def test_the_defaults_are_ten_percent_late_two_percent_duplicate_one_percent_malformed() -> None:
    config = SimulatorConfig()
    assert (config.late_fraction, config.late_min_seconds, config.late_max_seconds) == (
        0.10,
        30.0,
        60.0,
    )
    assert (config.duplicate_fraction, config.malformed_fraction) == (0.02, 0.01)
    assert (config.rate, config.duration) == (50.0, 60.0)


def test_malformed_messages_cover_every_quarantine_reason() -> None:
    messages = plan(count=3000, malformed_fraction=0.2)
    reasons = {m.expected_error for m in messages if m.kind is LedgerKind.MALFORMED}
    # `unrepresentable` is the decoder's catch-all for what no known rule catches: no message can
    # be built to provoke it on purpose.
    assert reasons == set(QuarantineReason) - {QuarantineReason.UNREPRESENTABLE}
    assert all(m.expected_error is None for m in valid(messages))


def test_each_malformed_message_breaks_exactly_its_expected_rule() -> None:
    now = datetime.fromtimestamp(START, UTC)
    messages = [m for m in plan(count=4000, malformed_fraction=0.5) if m.expected_error]
    assert len(messages) > 1500
    for m in messages:
        assert first_failing_rule(m.value, TOPICS[m.topic], now) == m.expected_error, m.value[:300]


def test_the_ingest_decoder_quarantines_each_malformed_message_with_its_expected_reason() -> None:
    # Contract test between the simulator and tidelake.ingest.decode: the ledger's expected_error
    # must be what ingestion actually says, or reconciliation reports false mismatches.
    from tidelake.ingest.decode import ChunkDecoder, RawChunk

    messages = plan(count=3000, malformed_fraction=0.4, very_late_fraction=0.05)
    by_topic: dict[str, list[PlannedMessage]] = defaultdict(list)
    for m in messages:
        by_topic[m.topic].append(m)
    for topic, batch in by_topic.items():
        n = len(batch)
        chunk = RawChunk(
            topic=topic,
            partitions=np.zeros(n, dtype=np.int32),
            offsets=np.arange(n, dtype=np.int64),
            timestamps_ms=np.full(n, -1, dtype=np.int64),
            keys=[m.key for m in batch],
            values=[m.value for m in batch],
        )
        decoder = ChunkDecoder(TOPICS[topic], max_message_bytes=MAX_BYTES, threads=1)
        try:
            out = decoder.decode(chunk, datetime.fromtimestamp(START + 120, UTC))
        finally:
            decoder.close()
        got = dict(
            zip(
                out.invalid.column("_offset").to_pylist(),
                out.invalid.column("error").to_pylist(),
                strict=True,
            )
        )
        for i, m in enumerate(batch):
            expected = None if m.expected_error is None else m.expected_error.value
            assert got.get(i) == expected, (topic, m.value[:300])


def test_malformed_ledger_fields_are_filled_only_where_the_message_has_them() -> None:
    messages = [m for m in plan(count=4000, malformed_fraction=0.5) if m.expected_error]
    for m in messages:
        if m.expected_error is QuarantineReason.MISSING_FIELD:
            doc = json.loads(m.value)
            assert m.event_id == doc.get("event_id")
            assert m.event_type == doc.get("event_type")
            assert (m.event_time is None) == ("event_time" not in doc)
        if m.expected_error is QuarantineReason.ABSURD_TIMESTAMP:
            assert m.event_time is not None and m.event_time.year in (1970, 2999)
        if m.expected_error is QuarantineReason.UNKNOWN_EVENT_TYPE:
            assert m.event_type not in TOPICS[m.topic].event_types
    missing_ids = [m for m in messages if m.event_id is None]
    assert missing_ids, "some missing_field messages lack their event_id"


def test_oversized_messages_exceed_the_configured_limit_and_nothing_else_does() -> None:
    sim = EventSimulator(
        SimulatorConfig(
            seed=1,
            duration=None,
            count=500,
            malformed_fraction=1.0,
            late_fraction=0,
            duplicate_fraction=0,
            malformed_reasons=(QuarantineReason.OVERSIZED, QuarantineReason.WRONG_TYPE),
        ),
        start=START,
        max_message_bytes=4096,
    )
    for m in sim:
        oversized = m.expected_error is QuarantineReason.OVERSIZED
        assert (len(m.value) > 4096) == oversized


def test_duplicates_repeat_an_earlier_message_byte_for_byte() -> None:
    messages = plan(count=3000, duplicate_fraction=0.05)
    first_seen: dict[str, PlannedMessage] = {}
    duplicates = 0
    for m in messages:
        if m.kind is LedgerKind.DUPLICATE:
            duplicates += 1
            original = first_seen[m.event_id or ""]
            assert (m.value, m.key, m.topic) == (original.value, original.key, original.topic)
            assert m.send_at >= original.send_at
        elif m.kind is not LedgerKind.MALFORMED:
            assert m.event_id not in first_seen, "valid originals have unique event_ids"
            first_seen[m.event_id or ""] = m
    assert duplicates > 100


def test_late_messages_are_sent_30_to_60_seconds_after_their_event_time() -> None:
    late = [m for m in plan(count=3000) if m.kind is LedgerKind.LATE]
    assert len(late) > 200
    for m in late:
        assert m.event_time_ms is not None
        assert 30.0 - 0.001 <= m.send_at - m.event_time_ms / 1000 <= 60.0 + 0.001


def test_the_late_delay_range_is_configurable() -> None:
    late = [
        m
        for m in plan(count=1000, late_min_seconds=5, late_max_seconds=6)
        if m.kind is LedgerKind.LATE
    ]
    assert late and all(5 - 0.001 <= m.send_at - m.event_time_ms / 1000 <= 6.001 for m in late)  # type: ignore[operator]


def test_very_late_messages_have_event_time_hours_in_the_past() -> None:
    messages = plan(count=2000, late_fraction=0, very_late_fraction=0.1)
    lags = [
        m.send_at - m.event_time_ms / 1000
        for m in messages
        if m.kind is LedgerKind.LATE and m.event_time_ms is not None
    ]
    assert len(lags) > 150
    assert all(3600 - 0.001 <= lag <= 6 * 3600 + 0.001 for lag in lags)
    assert all(m.topic != "shop.purchases" for m in messages if m.kind is LedgerKind.LATE)


# ---------------------------------------------------------------------- believable entities


def test_purchases_follow_a_view_and_an_add_to_cart_of_the_product_in_the_same_session() -> None:
    messages = valid(plan(count=8000, malformed_fraction=0, late_fraction=0.1))
    docs = {}
    for m in messages:
        # Labelled fraud scenarios (purchase_without_browsing) break the funnel on purpose.
        if m.label is None:
            docs[m.event_id] = (m.event_time_ms or 0, json.loads(m.value))
    views: dict[tuple[str, str], list[int]] = defaultdict(list)
    carts: dict[tuple[str, str], list[int]] = defaultdict(list)
    purchases = []
    for time_ms, doc in docs.values():
        key = (doc.get("session_id"), doc.get("product_id"))
        if doc["event_type"] == "page_view" and doc["product_id"]:
            views[key].append(time_ms)
        elif doc["event_type"] == "add_to_cart":
            carts[key].append(time_ms)
        elif doc["event_type"] == "purchase":
            purchases.append((time_ms, key))
    assert len(purchases) > 30
    for time_ms, key in purchases:
        cart_times = [t for t in carts[key] if t <= time_ms]
        assert cart_times, f"purchase without add_to_cart: {key}"
        assert any(t <= min(cart_times) for t in views[key]), f"cart without view: {key}"


def test_the_funnel_narrows_from_views_to_carts_to_purchases() -> None:
    types = Counter(json.loads(m.value)["event_type"] for m in valid(plan(count=8000)))
    assert types["page_view"] > types["click"] > types["add_to_cart"] > 0
    assert 0 < types["purchase"] < types["add_to_cart"] * 1.5
    assert types["search"] > 0


def test_product_popularity_is_skewed() -> None:
    products = Counter(
        json.loads(m.value)["product_id"]
        for m in valid(plan(count=8000))
        if m.topic == "shop.page_views" and json.loads(m.value)["product_id"]
    )
    top = sum(n for _, n in products.most_common(10))
    assert top / sum(products.values()) > 0.2  # 2% of the catalogue, >20% of the views


def test_app_sessions_open_then_show_screens_and_taps_then_close() -> None:
    messages = plan(count=6000, topics=("app.interactions",), late_fraction=0, duplicate_fraction=0)
    per_user: dict[str, list[str]] = defaultdict(list)
    for m in valid(messages):
        per_user[json.loads(m.value)["user_id"]].append(m.event_type or "")
    closes = 0
    for events in per_user.values():
        open_ = False
        for event_type in events:
            if event_type == "app_open":
                assert not open_, events
                open_ = True
            else:
                assert open_, events
                if event_type == "app_close":
                    open_ = False
                    closes += 1
    assert closes > 100


def test_sensor_readings_hover_around_baselines_with_rare_spikes() -> None:
    messages = valid(plan(count=20000, topics=("infra.sensor_readings",), late_fraction=0))
    series: dict[tuple[str, str], list[float]] = defaultdict(list)
    units = {}
    for m in messages:
        doc = json.loads(m.value)
        series[doc["device_id"], doc["metric"]].append(doc["value"])
        units[doc["metric"]] = doc["unit"]
    assert units["temperature"] == "C"
    temps = [v for (_, metric), vs in series.items() if metric == "temperature" for v in vs]
    medians = [
        statistics.median(vs) for (_, metric), vs in series.items() if metric == "temperature"
    ]
    assert all(18 < med < 26 for med in medians)
    spikes = sum(1 for v in temps if v > 30)
    assert 0 < spikes < 0.03 * len(temps)


def test_only_the_selected_topics_are_produced() -> None:
    messages = plan(count=1000, topics=("shop.purchases", "infra.sensor_readings"))
    assert {m.topic for m in messages} == {"shop.purchases", "infra.sensor_readings"}


# ---------------------------------------------------------------------- timing


def test_arrivals_are_bursty_but_average_the_configured_rate() -> None:
    messages = plan(count=None, duration=600, rate=50, late_fraction=0)
    assert len(messages) / 600 == pytest.approx(50, rel=0.2)
    per_second = Counter(int(m.send_at - START) for m in messages)
    counts = [per_second[s] for s in range(600)]
    # A plain Poisson process at 50/s has variance 50; bursts make it much larger.
    assert statistics.variance(counts) > 5 * 50
    assert max(counts) > 3 * 50


def test_a_count_gives_exactly_that_many_messages_including_held_back_ones() -> None:
    assert len(plan(count=777, late_fraction=0.5)) == 777


def test_a_bounded_run_waits_for_held_back_messages_after_its_last_arrival() -> None:
    messages = plan(count=None, duration=10, rate=20)
    arrivals_end = max(m.send_at for m in messages if m.kind is not LedgerKind.LATE)
    assert arrivals_end <= START + 10
    assert max(m.send_at for m in messages) > START + 10 + 20


def test_without_waiting_held_back_messages_are_flushed_at_the_end_but_stay_late() -> None:
    messages = plan(count=None, duration=10, rate=20, wait_late=False)
    late = [m for m in messages if m.kind is LedgerKind.LATE]
    assert late and max(m.send_at for m in messages) <= START + 10
    for m in late:
        assert json.loads(m.value)["received_time"] <= datetime.fromtimestamp(
            START + 10, UTC
        ).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_stop_ends_arrivals_and_releases_held_back_messages_at_once() -> None:
    sim = EventSimulator(SimulatorConfig(seed=1, duration=0, late_fraction=0.5), start=START)
    out = []
    for m in sim:
        out.append(m)
        if len(out) == 100:
            sim.stop()
    assert sim.pending_late == 0
    assert out[-1].send_at <= out[99].send_at + 0.001
    assert sum(m.kind is LedgerKind.LATE for m in out) > 20


def test_max_rate_mode_stamps_events_with_the_clock() -> None:
    ticks = iter(range(10_000))
    config = SimulatorConfig.bulk(100)
    messages = list(EventSimulator(config, start=0.0, clock=lambda: START + next(ticks) / 1000))
    assert all(m.kind is LedgerKind.ON_TIME for m in messages)
    assert messages[-1].event_time_ms - messages[0].event_time_ms == pytest.approx(99, abs=2)  # type: ignore[operator]


def test_the_bulk_helper_gives_n_valid_on_time_messages_of_about_300_bytes() -> None:
    messages = list(generate_messages(n=2000))
    assert len(messages) == 2000
    assert all(m.kind is LedgerKind.ON_TIME for m in messages)
    assert 200 < statistics.mean(len(m.value) for m in messages) < 400
    assert len({m.event_id for m in messages}) == 2000


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"duration": -1}, "duration"),
        ({"count": 0}, "count"),
        ({"late_fraction": 1.5}, "late_fraction"),
        ({"malformed_fraction": -0.1}, "malformed_fraction"),
        ({"late_fraction": 0.6, "duplicate_fraction": 0.6}, "sum"),
        ({"late_min_seconds": 60, "late_max_seconds": 30}, "late_min_seconds"),
        ({"topics": ("shop.nope",)}, "shop.nope"),
        ({"topics": ()}, "topics"),
        ({"compression": "brotli"}, "compression"),
    ],
)
def test_invalid_configs_are_rejected_with_a_clear_error(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        SimulatorConfig(**overrides)


def test_out_of_range_alone_cannot_be_produced_on_topics_without_numeric_rules() -> None:
    config = SimulatorConfig(
        topics=("shop.clicks",), malformed_reasons=(QuarantineReason.OUT_OF_RANGE,)
    )
    with pytest.raises(ConfigError, match="out_of_range"):
        EventSimulator(config, start=START)


def test_the_bulk_preset_can_be_adjusted() -> None:
    config = SimulatorConfig.bulk(10, topics=("shop.clicks",))
    assert replace(config, count=10) == config
    assert config.topics == ("shop.clicks",) and config.max_rate
