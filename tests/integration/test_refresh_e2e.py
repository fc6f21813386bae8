"""``tidelake refresh`` as users run it: simulated traffic (late, hours-late, duplicate, malformed
events) on the embedded broker → one command → silver unique, gold per minute = the producer
ledger per minute, marts built; again → nothing changes; an hours-late event → only its own old
hour's gold rows change; a refresh killed mid-commit and re-run → nothing counted twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
import pytest
from confluent_kafka import Producer

from tests.integration.test_ingest_e2e import ingest_env
from tidelake.contracts import TOPICS
from tidelake.dagster_home import ensure_dagster_home
from tidelake.lake import Lake
from tidelake.layers.gold import EVENTS_PER_MINUTE_PATH
from tidelake.ledger import LEDGER_PATH
from tidelake.settings import KafkaSettings, LakeSettings, Settings
from tidelake.simulator import SimulatorConfig, run_simulation

pytestmark = pytest.mark.integration
REFRESH = [sys.executable, "-m", "tidelake.cli", "refresh", "--json"]
CLICKS = TOPICS["shop.clicks"]


def env_for(kafka: KafkaSettings, lake: LakeSettings, tmp: Path, **extra: str) -> dict[str, str]:
    home = ensure_dagster_home(tmp / "dagster_home")
    return ingest_env(
        kafka,
        lake,
        DAGSTER_HOME=str(home),
        TIDELAKE_WAREHOUSE_PATH=str(tmp / "warehouse.duckdb"),
        TIDELAKE_PARTITIONS_START=(datetime.now(UTC) - timedelta(days=2)).date().isoformat(),
        **extra,
    )


def refresh(env: dict[str, str], *extra: str, check: bool = True) -> dict[str, Any]:
    proc = subprocess.run([*REFRESH, *extra], env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    out["returncode"] = proc.returncode
    return out


def frame(lake: Lake, path: str) -> pl.DataFrame:
    table = lake.open(path)
    assert table is not None, f"{path} was not built"
    return pl.from_arrow(table.to_pyarrow_table())  # type: ignore[return-value]


def versions(lake: Lake) -> dict[str, int]:
    paths = [*(c.silver_path for c in TOPICS.values()), EVENTS_PER_MINUTE_PATH]
    out = {}
    for p in paths:
        t = lake.open(p)
        if t is not None:
            out[p] = t.version()
    return out


def ledger_per_minute(lake: Lake) -> pl.DataFrame:
    ledger = frame(lake, LEDGER_PATH).filter(pl.col("kind") != "malformed")
    return (
        ledger.group_by("topic", pl.col("event_time").dt.truncate("1m").alias("window_start"))
        .agg(pl.col("event_id").n_unique().alias("expected"))
        .sort("topic", "window_start")
    )


def gold_per_minute(lake: Lake) -> pl.DataFrame:
    return (
        frame(lake, EVENTS_PER_MINUTE_PATH)
        .group_by("topic", "window_start")
        .agg(pl.col("events").sum())
        .sort("topic", "window_start")
    )


@pytest.mark.slow
def test_refresh_derives_exactly_what_was_produced_and_only_the_hours_late_data_touch(
    kafka_settings: KafkaSettings, local_lake_settings: LakeSettings, tmp_path: Path
) -> None:
    summary = run_simulation(
        Settings(kafka=kafka_settings, lake=local_lake_settings),
        SimulatorConfig(
            count=1500,
            duration=None,
            max_rate=True,
            seed=5,
            late_fraction=0.10,
            very_late_fraction=0.05,
            duplicate_fraction=0.05,
            malformed_fraction=0.03,
            wait_late=False,
        ),
        progress=False,
    )
    assert summary.ok
    env = env_for(kafka_settings, local_lake_settings, tmp_path)
    lake = Lake.from_settings(local_lake_settings)

    first = refresh(env)

    steps = [s["step"] for s in first["steps"]]
    assert first["ok"] and steps == ["drain", "derive", "cohorts", "warehouse"], first
    for path in ("gold/fraud_flags", "gold/sensor_anomalies", "gold/user_activity"):
        assert lake.open(path) is not None, f"{path} was refreshed"
    assert frame(lake, "gold/top_products_last_hour").height > 0
    users = (
        pl.concat(
            [
                frame(lake, c.silver_path).select("user_id")
                for c in TOPICS.values()
                if c.key_field == "user_id"
            ]
        )["user_id"]
        .drop_nulls()
        .n_unique()
    )
    cohorts = frame(lake, "gold/cohort_retention")
    day0 = cohorts.filter(pl.col("day_offset") == 0)
    assert day0["cohort_size"].sum() == users, "every user in exactly one cohort"
    assert (day0["retained_users"] == day0["cohort_size"]).all(), "day 0 is 100 %"
    for contract in TOPICS.values():
        silver = frame(lake, contract.silver_path)
        bronze = frame(lake, contract.bronze_path)
        assert silver["event_id"].is_unique().all(), contract.name
        assert silver.height == bronze["event_id"].n_unique(), contract.name
    expected = ledger_per_minute(lake)
    got = gold_per_minute(lake)
    joined = expected.join(got, on=["topic", "window_start"], how="full", coalesce=True)
    mismatch = joined.filter(pl.col("expected").fill_null(0) != pl.col("events").fill_null(0))
    assert mismatch.is_empty(), mismatch
    hours = got["window_start"].dt.truncate("1h").n_unique()
    assert hours >= 3, "the hours-late events landed in their own old hours"
    con = duckdb.connect(env["TIDELAKE_WAREHOUSE_PATH"], read_only=True)
    try:
        [(page_views,)] = con.execute("select sum(page_views) from marts.daily_kpis").fetchall()
    finally:
        con.close()
    assert page_views == frame(lake, TOPICS["shop.page_views"].silver_path).height

    before = versions(lake)
    again = refresh(env)
    assert again["ok"] and again["runs"] == 0, again
    assert versions(lake) == before, "a second refresh changes nothing"

    # One more event, five hours late: only its own hour's gold rows may change.
    old = (datetime.now(UTC) - timedelta(hours=5)).replace(minute=7, second=3, microsecond=0)
    gold_before = frame(lake, EVENTS_PER_MINUTE_PATH)
    producer = Producer(kafka_settings.client_config() | {"acks": "all"})
    event = {
        "event_id": "11111111-2222-4333-8444-555555555555",
        "event_type": "click",
        "event_time": old.isoformat(),
        "user_id": "u-late",
        "session_id": "s-late",
        "product_id": "p-1",
        "element": "button",
    }
    producer.produce(CLICKS.physical_topic(kafka_settings.topic_prefix), orjson.dumps(event), b"u")
    producer.flush(10)
    assert refresh(env)["ok"]

    gold_after = frame(lake, EVENTS_PER_MINUTE_PATH)
    old_hour = old.replace(minute=0, second=0)
    in_hour = pl.col("window_start").dt.truncate("1h") == old_hour
    key = ["topic", "event_type", "window_start"]
    assert gold_after.filter(~in_hour).sort(key).equals(gold_before.filter(~in_hour).sort(key))
    row = gold_after.filter(
        (pl.col("topic") == CLICKS.name)
        & (pl.col("event_type") == "click")
        & (pl.col("window_start") == old.replace(second=0))
    )
    prior = gold_before.filter(
        (pl.col("topic") == CLICKS.name)
        & (pl.col("event_type") == "click")
        & (pl.col("window_start") == old.replace(second=0))
    )
    assert row["events"].sum() == prior["events"].sum() + 1


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before_derive_commit", "after_derive_commit"])
def test_a_refresh_killed_at_its_commit_and_run_again_counts_nothing_twice(
    kafka_settings: KafkaSettings,
    local_lake_settings: LakeSettings,
    tmp_path: Path,
    point: str,
) -> None:
    summary = run_simulation(
        Settings(kafka=kafka_settings, lake=local_lake_settings),
        SimulatorConfig(
            count=600, duration=None, max_rate=True, seed=9, duplicate_fraction=0.1, wait_late=False
        ),
        progress=False,
    )
    assert summary.ok
    env = env_for(kafka_settings, local_lake_settings, tmp_path)
    lake = Lake.from_settings(local_lake_settings)
    assert refresh(env, "--no-warehouse")["ok"]
    # New events (each delivered twice, as a producer retry does) make silver and gold stale;
    # the next refresh is killed at its first derive commit, before or after it lands.
    producer = Producer(kafka_settings.client_config() | {"acks": "all"})
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(20):
        event = {
            "event_id": f"11111111-2222-4333-8444-{i:012d}",
            "event_type": "click",
            "event_time": (now - timedelta(seconds=i)).isoformat(),
            "user_id": "u",
            "session_id": "s",
            "product_id": "p",
            "element": "e",
        }
        body = orjson.dumps(event)
        producer.produce(CLICKS.physical_topic(kafka_settings.topic_prefix), body, b"u")
        producer.produce(CLICKS.physical_topic(kafka_settings.topic_prefix), body, b"u")  # retry
    producer.flush(10)

    proc = subprocess.run(
        [*REFRESH, "--no-warehouse"],
        env=env | {"TIDELAKE_FAULT_POINT": f"{point}:1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.stdout[-2000:], proc.stderr[-2000:])

    assert refresh(env, "--no-warehouse")["ok"]

    silver = frame(lake, CLICKS.silver_path)
    assert silver["event_id"].is_unique().all()
    assert silver.height == frame(lake, CLICKS.bronze_path)["event_id"].n_unique()
    expected = ledger_per_minute(lake)
    extra = pl.DataFrame(
        {
            "topic": [CLICKS.name] * 20,
            "window_start": [(now - timedelta(seconds=i)).replace(second=0) for i in range(20)],
        },
        schema_overrides={"window_start": pl.Datetime("us", "UTC")},
    )
    extra = extra.group_by("topic", "window_start").agg(pl.len().cast(pl.UInt32).alias("more"))
    expected = (
        expected.join(extra, on=["topic", "window_start"], how="full", coalesce=True)
        .with_columns(
            (pl.col("expected").fill_null(0) + pl.col("more").fill_null(0)).alias("expected")
        )
        .drop("more")
    )
    got = gold_per_minute(lake)
    joined = expected.join(got, on=["topic", "window_start"], how="full", coalesce=True)
    mismatch = joined.filter(pl.col("expected").fill_null(0) != pl.col("events").fill_null(0))
    assert mismatch.is_empty(), mismatch
