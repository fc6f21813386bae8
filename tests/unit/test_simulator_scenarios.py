"""Labelled scenarios, clean normal traffic, history mode and the ledger's ``label`` column.

The fraud checks apply an independent, plain-Python reading of each rule of the labels contract
(/tmp/i9/labels.md, mirrored in tidelake.ledger) to the generated events: every labelled purchase
must trigger exactly its own rule, every unlabelled purchase none.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from tidelake import cli
from tidelake.cli.simulate import config_from_args
from tidelake.lake import Lake
from tidelake.ledger import ANOMALY_LABELS, FRAUD_LABELS, FRAUD_RULES, LEDGER_PATH, LEDGER_SCHEMA
from tidelake.settings import ConfigError, LakeSettings
from tidelake.simulator import EventSimulator, LedgerWriter, PlannedMessage, SimulatorConfig
from tidelake.simulator.sensors import METRICS

START = datetime(2026, 11, 21, 23, 40, tzinfo=UTC).timestamp()
SIGMA = {m.name: m.noise for m in METRICS}
MIN_MS = 60_000


def simulate(**overrides: Any) -> tuple[EventSimulator, list[PlannedMessage]]:
    options: dict[str, Any] = {"seed": 7, "duration": None, "count": 20_000}
    options.update(overrides)
    sim = EventSimulator(SimulatorConfig(**options), start=START)
    return sim, list(sim)


def events(messages: list[PlannedMessage]) -> list[PlannedMessage]:
    """The logical events a pipeline would see: valid messages, each event_id once."""
    seen: dict[str, PlannedMessage] = {}
    for m in messages:
        if m.expected_error is None and m.event_id not in seen:
            seen[m.event_id or ""] = m
    return sorted(seen.values(), key=lambda m: m.event_time_ms or 0)


# ---------------------------------------------------------------------- the independent checker


@dataclass
class Purchase:
    t: int
    doc: dict[str, Any]
    label: str | None


def fired_rules(messages: list[PlannedMessage]) -> list[tuple[Purchase, set[str]]]:
    """Each purchase event with the set of rules it triggers, per the labels contract."""
    purchases: list[Purchase] = []
    browsed: dict[tuple[str, str], list[int]] = defaultdict(list)
    carted: dict[tuple[str, str], list[int]] = defaultdict(list)
    for m in events(messages):
        doc, t = json.loads(m.value), m.event_time_ms or 0
        if m.event_type == "purchase":
            purchases.append(Purchase(t, doc, m.label))
        elif m.event_type == "page_view" and doc["product_id"]:
            browsed[doc["session_id"], doc["product_id"]].append(t)
        elif m.event_type == "add_to_cart":
            carted[doc["session_id"], doc["product_id"]].append(t)
    by_user: dict[str, list[Purchase]] = defaultdict(list)
    by_ip: dict[str, list[Purchase]] = defaultdict(list)
    orders: dict[str, list[Purchase]] = defaultdict(list)
    for p in purchases:
        by_user[p.doc["user_id"]].append(p)
        by_ip[p.doc["ip_address"]].append(p)
        orders[p.doc["order_id"]].append(p)
    totals = {
        o: sum(p.doc["quantity"] * p.doc["unit_price"] for p in ps) for o, ps in orders.items()
    }
    first = {o: min(p.t for p in ps) for o, ps in orders.items()}

    out = []
    for p in purchases:
        d, t = p.doc, p.t
        fired = set()
        mine = [q for q in by_user[d["user_id"]] if t - 60 * MIN_MS < q.t <= t]
        if sum(1 for q in mine if q.t > t - 10 * MIN_MS) >= 5:
            fired.add("velocity")
        ip_users = {q.doc["user_id"] for q in by_ip[d["ip_address"]] if t - 60 * MIN_MS < q.t <= t}
        if len(ip_users) >= 5:
            fired.add("ip_sharing")
        if len({q.doc["payment_method"] for q in mine}) >= 3:
            fired.add("payment_hopping")
        start = first[d["order_id"]]
        prior = [totals[o] for o, f in first.items() if start - 24 * 60 * MIN_MS <= f < start]
        if len(prior) >= 20 and totals[d["order_id"]] >= 10 * statistics.median(prior):
            fired.add("high_value")
        key = (d["session_id"], d["product_id"])
        if not any(t - 30 * MIN_MS <= a <= t for a in browsed[key] + carted[key]):
            fired.add("purchase_without_browsing")
        if any(0 <= t - a < 3000 for a in carted[key]):
            fired.add("rapid_checkout")
        out.append((p, fired))
    return out


def assert_labels_match_rules(messages: list[PlannedMessage]) -> Counter[str]:
    checked = fired_rules(messages)
    wrong = [
        (p.label, sorted(fired), p.doc)
        for p, fired in checked
        if fired != (set() if p.label is None else {p.label.removeprefix("fraud:")})
    ]
    assert not wrong, wrong[:5]
    return Counter(p.label or "normal" for p, _ in checked)


# ---------------------------------------------------------------------- fraud scenarios


def test_every_labelled_purchase_triggers_exactly_its_rule_and_normal_ones_none() -> None:
    _, messages = simulate(seed=3, count=40_000, fraud_every_purchases=8)
    counts = assert_labels_match_rules(messages)
    assert {f"fraud:{r}" for r in FRAUD_RULES} <= set(counts), counts
    assert counts["normal"] > 500


@pytest.mark.parametrize(
    "overrides",
    [
        {"seed": 11},  # the defaults
        {"seed": 12, "rate": 400.0, "count": 50_000},  # busy: many sessions, short gaps
        {"seed": 13, "rate": 2.0, "count": 8000},  # sparse: sessions last hours
        {"seed": 14, "late_fraction": 0.3, "duplicate_fraction": 0.1, "fraud_every_purchases": 15},
    ],
)
def test_normal_traffic_triggers_no_fraud_rule(overrides: dict[str, Any]) -> None:
    counts = assert_labels_match_rules(simulate(**overrides)[1])
    assert counts["normal"] > 100


def test_fraud_scenarios_start_at_about_the_configured_rate_over_all_kinds() -> None:
    sim, messages = simulate(seed=5, count=60_000, fraud_every_purchases=10)
    assert sim.world.fraud is not None
    started = sim.world.fraud.started
    normal = sum(1 for m in events(messages) if m.event_type == "purchase" and m.label is None)
    # Scenario purchases that end unlabelled count as normal here, hence the loose bounds.
    assert 0.05 * normal < sum(started.values()) < 0.15 * normal
    assert all(n >= 5 for n in started.values()), started


def test_default_runs_label_a_modest_share_of_purchases() -> None:
    _, messages = simulate(seed=21, count=60_000)
    labels = Counter(m.label for m in events(messages) if m.event_type == "purchase")
    labelled = sum(n for k, n in labels.items() if k is not None)
    assert 0 < labelled < 0.06 * sum(labels.values()), labels
    assert set(labels) - {None} <= set(FRAUD_LABELS)


def test_a_velocity_burst_labels_only_its_fifth_purchase_onwards() -> None:
    _, messages = simulate(seed=8, count=40_000, fraud_every_purchases=8, fraud_kinds=("velocity",))
    purchases = [
        (m.event_time_ms or 0, json.loads(m.value), m.label)
        for m in events(messages)
        if m.event_type == "purchase"
    ]
    burst_users = {d["user_id"] for _, d, label in purchases if label == "fraud:velocity"}
    assert len(burst_users) >= 3
    for user in burst_users:
        mine = [(t, d, label) for t, d, label in purchases if d["user_id"] == user]
        assert 5 <= len(mine) <= 8
        assert mine[-1][0] - mine[0][0] < 10 * MIN_MS
        assert [label for *_, label in mine] == [None] * 4 + ["fraud:velocity"] * (len(mine) - 4)
        assert len({d["payment_method"] for _, d, _ in mine}) == 1
        assert len({d["ip_address"] for _, d, _ in mine}) == 1


def test_fraud_labels_only_on_purchases_and_anomaly_labels_only_on_readings() -> None:
    _, messages = simulate(seed=4, count=80_000, devices=4, fraud_every_purchases=10)
    for m in messages:
        if m.label in FRAUD_LABELS:
            assert m.event_type == "purchase"
        elif m.label is not None:
            assert m.label in ANOMALY_LABELS and m.topic == "infra.sensor_readings"
    assert {m.label for m in messages} >= {*FRAUD_LABELS[:1], *ANOMALY_LABELS}


# ---------------------------------------------------------------------- sensor anomalies


def sensor_series(messages: list[PlannedMessage]) -> dict[tuple[str, str], list[Any]]:
    series: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for m in events(messages):
        if m.topic == "infra.sensor_readings":
            doc = json.loads(m.value)
            series[doc["device_id"], doc["metric"]].append((doc["value"], m.label))
    return series


def runs(labels: list[str | None]) -> list[tuple[int, int, str]]:
    """(start, end exclusive, label) of each run of equal non-null labels."""
    out: list[tuple[int, int, str]] = []
    for i, label in enumerate(labels):
        if label is None:
            continue
        if out and out[-1][1] == i and out[-1][2] == label:
            out[-1] = (out[-1][0], i + 1, label)
        else:
            out.append((i, i + 1, label))
    return out


def test_sensor_anomaly_labels_follow_the_contract() -> None:
    _, messages = simulate(
        seed=9,
        count=60_000,
        devices=5,
        topics=("infra.sensor_readings",),
        anomaly_every_readings=150,
    )
    kinds: Counter[str] = Counter()
    for (_, metric), readings in sensor_series(messages).items():
        sigma = SIGMA[metric]
        values = [v for v, _ in readings]
        labels = [label for _, label in readings]
        previous_end = 0
        for start, end, label in runs(labels):
            kind = label.removeprefix("anomaly:")
            kinds[kind] += 1
            lead = {"stuck": 2, "drift": 24}.get(kind, 0)  # unlabelled readings of the segment
            assert start - lead - previous_end >= 100, (metric, start, label)
            previous_end = end
            before = statistics.median(values[start - lead - 20 : start - lead])
            offsets = [abs(v - before) for v in values[start:end]]
            if kind == "spike":
                assert end - start == 1 and offsets[0] >= 12 * sigma
            elif kind == "level_shift":
                assert end - start == 20 and min(offsets) >= 10 * sigma
            elif kind == "stuck":
                assert end - start == 18
                assert len(set(values[start - 3 : end])) == 1  # the reading before + 20 equal
                assert values[start - 4] != values[start - 3] or values[end] != values[start]
            else:
                assert end - start == 36
                # Labelled where the injected drift is 6.25..15 sigma (mean 10.6), plus noise.
                assert statistics.mean(offsets) == pytest.approx(10.6 * sigma, abs=3 * sigma)
                assert offsets[-1] >= 11 * sigma
    assert all(kinds[k] >= 5 for k in ("spike", "level_shift", "stuck", "drift")), kinds


def test_normal_sensor_readings_stay_within_a_few_sigma_of_their_series() -> None:
    _, messages = simulate(seed=10, count=30_000, topics=("infra.sensor_readings",), devices=5)
    for (_, metric), readings in sensor_series(messages).items():
        normal = [v for v, label in readings if label is None]
        med = statistics.median(normal)
        far = sum(1 for v in normal if abs(v - med) > 6 * SIGMA[metric])
        # Drift segments leave 24 unlabelled readings up to 6 sigma off; nothing else strays.
        assert far <= 0.01 * len(normal), (metric, far)


# ---------------------------------------------------------------------- switching off


def test_no_scenarios_means_no_labels_anywhere() -> None:
    _, messages = simulate(seed=3, count=40_000, scenarios=False, fraud_every_purchases=5)
    assert {m.label for m in messages} == {None}
    assert_labels_match_rules(messages)  # and normal traffic is still clean


def test_max_rate_runs_stage_no_scenarios() -> None:
    ticks = iter(range(100_000))
    config = SimulatorConfig.bulk(20_000, fraud_every_purchases=2)
    sim = EventSimulator(config, start=0.0, clock=lambda: START + next(ticks) / 1000)
    assert {m.label for m in sim} == {None} and sim.world.fraud is None


def test_scenarios_are_reproducible_from_the_seed() -> None:
    a = simulate(seed=6, count=15_000, fraud_every_purchases=5)[1]
    b = simulate(seed=6, count=15_000, fraud_every_purchases=5)[1]
    assert [(m.value, m.label, m.send_at) for m in a] == [(m.value, m.label, m.send_at) for m in b]
    assert any(m.label for m in a)


# ---------------------------------------------------------------------- history mode


def test_history_days_spread_events_over_the_past_days_with_returning_users() -> None:
    _, messages = simulate(seed=2, count=30_000, history_days=3, users=600)
    today = datetime.fromtimestamp(START, UTC).date()
    assert len(messages) == 30_000
    assert max(m.send_at for m in messages) < START
    valid = [m for m in events(messages) if m.expected_error is None]
    per_day: dict[date, set[str]] = defaultdict(set)
    events_per_day: Counter[date] = Counter()
    for m in valid:
        day = datetime.fromtimestamp((m.event_time_ms or 0) / 1000, UTC).date()
        events_per_day[day] += 1
        doc = json.loads(m.value)
        if "user_id" in doc:
            per_day[day].add(doc["user_id"])
    days = sorted(events_per_day)
    assert [(today - d).days for d in days] == [3, 2, 1]
    assert all(8_000 < n < 12_000 for n in events_per_day.values()), events_per_day
    first_day = per_day[days[0]]
    back_next = len(first_day & per_day[days[1]]) / len(first_day)
    back_later = len(first_day & per_day[days[2]]) / len(first_day)
    assert 0.2 < back_next < 0.7 and 0.05 < back_later < back_next
    assert per_day[days[1]] - first_day and per_day[days[2]] - per_day[days[1]] - first_day


def test_history_runs_keep_late_duplicate_and_malformed_messages_and_app_pairs() -> None:
    _, messages = simulate(seed=2, count=30_000, history_days=3, users=600)
    kinds = Counter(m.kind.value for m in messages)
    n = len(messages)
    assert kinds["late"] / n == pytest.approx(0.10, abs=0.02)
    assert kinds["duplicate"] / n == pytest.approx(0.02, abs=0.01)
    assert kinds["malformed"] / n == pytest.approx(0.01, abs=0.005)
    assert [m.send_at for m in messages] == sorted(m.send_at for m in messages)
    open_: dict[str, bool] = defaultdict(bool)
    for m in events(messages):
        if m.topic != "app.interactions":
            continue
        user = json.loads(m.value)["user_id"]
        if m.event_type == "app_open":
            assert not open_[user]
            open_[user] = True
        else:
            assert open_[user], user
            open_[user] = m.event_type != "app_close"


def test_history_traffic_is_labelled_as_truthfully_as_live_traffic() -> None:
    messages = simulate(seed=5, count=30_000, history_days=2, fraud_every_purchases=10)[1]
    counts = assert_labels_match_rules(messages)
    assert len(set(counts) - {"normal"}) >= 3


def test_history_needs_a_bounded_paced_run() -> None:
    with pytest.raises(ConfigError, match="max_rate"):
        SimulatorConfig(history_days=2, max_rate=True)
    with pytest.raises(ConfigError, match="count or a duration"):
        SimulatorConfig(history_days=2, duration=0)
    with pytest.raises(ConfigError, match="fraud_kinds"):
        SimulatorConfig(fraud_kinds=("shoplifting",))


# ---------------------------------------------------------------------- ledger and CLI


def test_labels_go_to_the_ledger_and_an_old_ledger_without_the_column_takes_them(
    tmp_path: Path,
) -> None:
    lake = Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))
    old_schema = pa.schema([f for f in LEDGER_SCHEMA if f.name != "label"])
    old_row = {
        "run_id": "sim-old",
        "topic": "shop.clicks",
        "event_id": "e-old",
        "event_type": "click",
        "event_time": datetime(2026, 11, 1, tzinfo=UTC),
        "kind": "on_time",
        "expected_error": None,
        "partition": 0,
        "offset": 0,
        "produced_at": datetime(2026, 11, 1, tzinfo=UTC),
    }
    write_deltalake(
        lake.uri(LEDGER_PATH),
        pa.Table.from_pylist([old_row], schema=old_schema),
        partition_by=["topic"],
    )
    _, messages = simulate(seed=3, count=5_000, fraud_every_purchases=3)
    writer = LedgerWriter(lake, "sim-new")
    for i, m in enumerate(messages):
        writer.add(m, 0, i, 1_700_000_000_000_000)
    assert writer.flush(), writer.last_error

    rows = DeltaTable(lake.uri(LEDGER_PATH)).to_pyarrow_table().to_pylist()
    assert len(rows) == 5_001
    assert [r["label"] for r in rows if r["run_id"] == "sim-old"] == [None]
    new = {
        r["event_id"]: r["label"]
        for r in rows
        if r["kind"] == "on_time" and r["run_id"] != "sim-old"
    }
    expected = {m.event_id: m.label for m in messages if m.kind.value == "on_time"}
    assert new == expected and any(expected.values())


def test_the_cli_has_scenario_and_history_flags() -> None:
    args = cli.build_parser().parse_args(
        ["simulate", "--no-scenarios", "--days=3", "--fraud-every=20", "--anomaly-every=50"]
    )
    config = config_from_args(args)
    assert not config.scenarios and config.history_days == 3
    assert (config.fraud_every_purchases, config.anomaly_every_readings) == (20, 50)
    defaults = config_from_args(cli.build_parser().parse_args(["simulate"]))
    assert defaults.scenarios and defaults.history_days == 0
