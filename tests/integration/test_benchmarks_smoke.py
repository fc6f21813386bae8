"""Keep the benchmark scripts from rotting: run their core functions on tiny inputs.

No timing is asserted (benchmarks report ratios; see docs/PERFORMANCE.md); these tests only check
that the scripts still run against the current engine and produce complete results.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
def test_ingest_throughput_runs_end_to_end(kafka_broker: str, tmp_path: Path) -> None:
    bench = _load("ingest_throughput")
    cfg = bench.BenchConfig(
        events=2_000,
        partitions=2,
        compressions=("none", "lz4"),
        bootstrap=kafka_broker,
        work_dir=tmp_path,
        quiet_seconds=0.3,
        commit_rows=1_500,
    )
    res = bench.run_benchmark(cfg, log=lambda _msg: None)

    assert [r.compression for r in res.results] == ["none", "lz4"]
    for r in res.results:
        (trial,) = r.trials
        assert trial.engine.records == trial.engine.bronze_rows == 2_000
        assert trial.engine.commits >= 2  # 1,500-row chunks: at least two bronze commits
        assert trial.raw_rate > 0 and trial.engine.rate > 0
        assert 0 <= trial.engine.quiet_idle_seconds <= trial.engine.seconds
        assert "decode" in trial.engine.stage_seconds
    assert 250 < res.mean_value_bytes < 350
    assert "ratio" in bench.format_table(res)
    assert res.to_dict()["results"][0]["median"]["ratio"] > 0


@pytest.mark.integration
def test_freshness_measures_landing_from_the_delta_log(kafka_broker: str, tmp_path: Path) -> None:
    """The freshness script's measurement half, on a lake written by the real engine."""
    fresh = _load("freshness")
    bench = _load("ingest_throughput")
    from tidelake.contracts import TOPICS
    from tidelake.ingest import IngestEngine
    from tidelake.kafka_admin import ensure_topics
    from tidelake.lake import Lake
    from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings, Settings

    contract = TOPICS["shop.page_views"]
    kafka = KafkaSettings(bootstrap_servers=kafka_broker, topic_prefix="smokefresh.", partitions=2)
    ensure_topics(kafka, [contract], partitions=2)
    messages = bench.generate(contract.name, 500, 0)
    bench.produce(Settings(kafka=kafka), contract.physical_topic("smokefresh."), "lz4", messages)
    before = time.time()
    lake = Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))
    engine = IngestEngine(lake, kafka, IngestSettings(quiet_seconds=0.3, commit_rows=200))
    report = engine.ingest_topic(contract)
    after = time.time()
    assert report.records == 500

    d = fresh.event_latencies(tmp_path / "lake" / contract.bronze_path)
    assert len(d["produced"]) == 500
    assert np.all(d["landed"] >= d["ingested"] - 0.01)  # committed after it was stamped
    assert np.all((d["landed"] >= before - 1) & (d["landed"] <= after + 1))
    assert len(np.unique(d["landed"])) >= 3  # 200-row chunks: three commits

    run = fresh.RunTimeline(
        "r1", contract.name, "SUCCESS", before - 1.0, before - 0.5, after + 1, step_start=before
    )
    parts = fresh.attribute(d["produced"], d["landed"], [run])
    assert parts["matched"].all()
    total = sum(parts[k] for k in fresh.PARTS)
    np.testing.assert_allclose(total, d["landed"] - d["produced"], atol=1e-6)
    assert (parts["before_step"] > 0).any()  # RUN_START → STEP_START is a part of its own


@pytest.mark.integration
def test_freshness_finds_when_each_event_became_visible_in_silver_and_gold(
    kafka_broker: str, tmp_path: Path
) -> None:
    """Gold visibility from the derive annotations, on tables written by the real refreshes:
    an event is visible only from the first gold commit that read a silver version holding it."""
    fresh = _load("freshness")
    bench = _load("ingest_throughput")
    from tidelake.contracts import TOPICS
    from tidelake.ingest import IngestEngine
    from tidelake.kafka_admin import ensure_topics
    from tidelake.lake import Lake
    from tidelake.layers import EVENTS_PER_MINUTE_PATH, refresh_events_per_minute, refresh_silver
    from tidelake.settings import (
        IngestSettings,
        KafkaSettings,
        LakeSettings,
        RefreshSettings,
        Settings,
    )

    contract = TOPICS["shop.page_views"]
    prefix = "smokegold."
    kafka = KafkaSettings(bootstrap_servers=kafka_broker, topic_prefix=prefix, partitions=1)
    ensure_topics(kafka, [contract], partitions=1)
    lake = Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake")))
    engine = IngestEngine(lake, kafka, IngestSettings(quiet_seconds=0.3, commit_rows=200))
    refresh = RefreshSettings()
    contracts = list(TOPICS.values())
    table_dir = tmp_path / "lake" / contract.bronze_path

    def ingest(n: int, seed: int) -> None:
        messages = bench.generate(contract.name, n, seed)
        bench.produce(Settings(kafka=kafka), contract.physical_topic(prefix), "lz4", messages)
        assert engine.ingest_topic(contract).records == n

    def visibility() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        d = fresh.event_latencies(table_dir)
        seen = fresh.derived_visibility(
            d["version"],
            d["hour"],
            contract.bronze_path,
            contract.silver_path,
            fresh.derived_commits(lake, contract.silver_path),
            fresh.derived_commits(lake, EVENTS_PER_MINUTE_PATH),
        )
        return d, seen

    ingest(300, 0)
    assert not fresh.derived_caught_up(lake, [contract])
    refresh_silver(lake, contract, settings=refresh)
    refresh_events_per_minute(lake, contracts, settings=refresh)
    assert fresh.derived_caught_up(lake, [contract])
    ingest(200, 1)  # lands after the first refresh: not visible until the next one
    d, seen = visibility()
    first = d["version"] == d["version"].min()
    assert first.sum() >= 200 and not first.all()
    assert d["hour"][0] is not None and str(d["hour"][0]).endswith(":00")
    assert np.isfinite(seen["gold"][first]).all()
    late = (
        d["version"]
        > fresh.first_visible(
            fresh.derived_commits(lake, contract.silver_path), contract.bronze_path, 0, d["hour"][0]
        ).inputs[contract.bronze_path]
    )
    assert late.sum() == 200
    assert np.isnan(seen["silver"][late]).all() and np.isnan(seen["gold"][late]).all()
    assert not fresh.derived_caught_up(lake, [contract])

    refresh_silver(lake, contract, settings=refresh)
    refresh_events_per_minute(lake, contracts, settings=refresh)
    d, seen = visibility()
    assert np.isfinite(seen["gold"]).all()
    assert np.all(seen["silver"] >= d["landed"]) and np.all(seen["gold"] >= seen["silver"])
    # The second batch became visible at the second gold commit, the first batch stayed at the
    # first: visibility is the *first* commit that holds an event, not the latest.
    assert len(np.unique(seen["gold"][late])) == 1
    assert seen["gold"][late][0] > seen["gold"][~late].max()

    run = fresh.RefreshRun(
        "r1", "SUCCESS", d["landed"].min() - 1, d["landed"].min() - 0.5, seen["gold"].max() + 1
    )
    split = fresh.attribute_gold(d["produced"], d["landed"], seen["silver"], seen["gold"], [run])
    assert split["matched"].all()
    np.testing.assert_allclose(
        sum(split[k] for k in fresh.GOLD_PARTS), seen["gold"] - d["produced"], atol=1e-6
    )
    assert (split["to_silver"] > 0).all() and (split["bronze"] > 0).all()


@pytest.mark.integration
@pytest.mark.slow
def test_freshness_runs_every_ingestion_model_in_one_invocation(
    kafka_broker: str, tmp_path: Path, clean_env: Path
) -> None:
    """The model loop on one topic at a trickle: each model on its own stack, all measured."""
    fresh = _load("freshness")
    cfg = fresh.FreshConfig(
        minutes=0.1,
        rate=100.0,
        topics=("shop.page_views",),
        partitions=1,
        warmup=0.0,
        cooldown=0.0,
        drain_timeout=120.0,
        bootstrap=kafka_broker,
        work_dir=tmp_path,
    )

    res = fresh.run_freshness(cfg, log=lambda _msg: None)

    assert list(res["models"]) == ["runs", "tick", "worker"]
    prefixes = set()
    for model, m in res["models"].items():
        assert m["drained"], model
        assert m["landed_rows"] == m["simulator"]["delivered"] > 0, model
        assert m["all"]["latency"]["count"] == m["landed_rows"], model
        assert m["all"]["split_matched"] == m["landed_rows"], f"{model}: every event attributed"
        split = sum(m["all"]["split_mean"][k] for k in fresh.PARTS)
        assert split == pytest.approx(m["all"]["latency"]["mean"], abs=1e-6), model
        assert m["runs"]["count"] >= 1, model
        assert m["cpu"]["traffic"]["cores"] > 0, model
        assert m["cpu"]["traffic"]["load_1min_mean"] >= 0, model
        # Gold's figures must account for every event; whether the daemon's refresh caught up
        # within this trickle's drain window depends on the machine, so it is reported, not
        # required (the visibility rules are tested deterministically above, and the headless
        # stack test proves the sensors build silver and gold on their own).
        derived = m["derived"]
        gold, bronze = derived["all"]["gold_latency"], m["all"]["latency"]
        assert gold["count"] + derived["all"]["invisible_in_gold"] == m["landed_rows"], model
        assert derived["all"]["split_matched"] == gold["count"], f"{model}: gold attributed"
        if gold["count"]:
            assert gold["p50"] >= bronze["p50"], model
            gold_split = sum(derived["all"]["split_mean"][k] for k in fresh.GOLD_PARTS)
            assert gold_split == pytest.approx(gold["mean"], abs=1e-6), model
        if derived["caught_up"]:
            assert derived["all"]["invisible_in_gold"] == 0, model
        prefixes.add(Path(m["work_dir"]).name)
    assert prefixes == {"runs", "tick", "worker"}  # a fresh lake and DAGSTER_HOME each
    assert res["models"]["runs"]["runs"]["kind"] == "Dagster runs"
    assert res["models"]["tick"]["runs"]["kind"] == "Dagster runs"
    worker = res["models"]["worker"]
    assert worker["runs"]["kind"] == "worker batches"
    assert worker["worker_exit_code"] == 0  # SIGTERM: finishes its batches, exits 0
    assert worker["all"]["split_mean"]["launch"] == 0  # no process start per batch
    assert worker["cpu"]["traffic"]["cores_by_root"]["worker"] > 0
    report = fresh.format_report(res)
    assert "runs" in report and "tick" in report and "worker" in report
    assert "steady p50/p95/p99 (gold)" in report and "refresh_derived runs" in report


def test_the_cpu_meter_counts_processes_that_exit_between_samples() -> None:
    """Run workers live a few seconds; their CPU must count after they exit, sampled or not."""
    fresh = _load("freshness")
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    parent = (
        "import subprocess, sys, time\n"
        f"for _ in range(4): subprocess.run([sys.executable, '-c', {burn!r}])\n"
        "print('done', flush=True)\n"
        "time.sleep(2)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], start_new_session=True, stdout=subprocess.PIPE
    )
    meter = fresh.CpuMeter([proc.pid], interval=3600.0)  # samples only when told
    try:
        meter.sample()
        assert proc.stdout is not None and proc.stdout.readline() == b"done\n"
        # The children were born and reaped between these two samples: never seen alive.
        after = meter.sample()
    finally:
        proc.wait()
    assert after.cpu_seconds[proc.pid] >= 4 * 0.3
