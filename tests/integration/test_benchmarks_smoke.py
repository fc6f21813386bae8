"""Keep the benchmark scripts from rotting: run their core functions on tiny inputs.

No timing is asserted (benchmarks report ratios; see docs/PERFORMANCE.md); these tests only check
that the scripts still run against the current engine and produce complete results.
"""

from __future__ import annotations

import importlib.util
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

    run = fresh.RunTimeline("r1", contract.name, "SUCCESS", before - 1.0, before - 0.5, after + 1)
    parts = fresh.attribute(d["produced"], d["landed"], [run])
    assert parts["matched"].all()
    total = parts["wait_for_request"] + parts["launch"] + parts["in_run"]
    np.testing.assert_allclose(total, d["landed"] - d["produced"], atol=1e-6)


def test_the_engine_profile_runs_on_a_small_chunk(capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: the profile imported modules that had moved and went unnoticed (benchmarks are
    # outside mypy's packages).
    profile = _load("profile_engine")
    assert profile.main(["--rows", "2000", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "ChunkDecoder.decode total" in out and "report.account" in out
