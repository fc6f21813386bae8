"""Analytics quality and cost on simulated scenarios: fraud and anomaly precision/recall/F1 against
the ledger's labels, and the cost of each analytics refresh.

The embedded broker and a fresh local lake; ``tidelake simulate``'s history mode (``--days``,
scenarios on) produces ``--events`` messages over the past days at once; the engine drains them;
silver, ``gold/fraud_flags``, ``gold/sensor_anomalies``, ``gold/user_activity`` and
``gold/cohort_retention`` are refreshed with :mod:`tidelake.layers` (no Dagster), each timed; then
:func:`tidelake.quality.evaluate.evaluate` scores the flags against the labels.

Usage::

    .venv/bin/python benchmarks/analytics_quality.py --days 3 --events 300000 --json

Goals (issue 9): per fraud rule recall >= 0.95 and precision >= 0.9, normal purchases flagged
<= 1 %; anomalies spike F1 >= 0.95, level shift and stuck-at F1 >= 0.8. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tidelake.contracts import TOPICS
from tidelake.devstack import start_stack
from tidelake.ingest import IngestEngine
from tidelake.lake import Lake
from tidelake.layers import refresh_silver
from tidelake.layers.anomalies import Anomalies
from tidelake.layers.cohorts import refresh_cohorts, refresh_user_activity
from tidelake.layers.fraud import refresh_fraud_flags
from tidelake.quality.evaluate import evaluate
from tidelake.settings import LakeSettings, RefreshSettings, Settings
from tidelake.simulator import SimulatorConfig, run_simulation


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="tidelake-analytics-"))
    lake_dir = work / "lake"
    shutil.rmtree(lake_dir, ignore_errors=True)
    base = replace(Settings.from_env(), lake=LakeSettings(uri=str(lake_dir)))
    refresh_settings = RefreshSettings(partitions_start="2020-01-01")
    out: dict[str, Any] = {"events": args.events, "days": args.days, "seconds": {}}
    with start_stack(base, log_dir=work / "logs") as stack:
        settings = stack.settings
        summary, out["seconds"]["simulate"] = timed(
            lambda: run_simulation(
                settings,
                SimulatorConfig(
                    count=args.events, duration=None, history_days=args.days, seed=args.seed
                ),
                progress=False,
            )
        )
        out["labels"] = dict(sorted(summary.by_label.items()))
        engine = IngestEngine.from_settings(settings)

        def drain() -> int:
            total = 0
            while True:
                n = sum(r.records for r in engine.ingest_all())
                total += n
                if not n:
                    return total

        out["ingested"], out["seconds"]["ingest"] = timed(drain)
    lake = Lake.from_settings(LakeSettings(uri=str(lake_dir)))
    _, out["seconds"]["silver"] = timed(
        lambda: [refresh_silver(lake, c, settings=refresh_settings) for c in TOPICS.values()]
    )
    _, out["seconds"]["fraud_flags"] = timed(
        lambda: refresh_fraud_flags(lake, settings=refresh_settings)
    )
    anomalies = Anomalies()
    _, out["seconds"]["sensor_anomalies"] = timed(
        lambda: anomalies.refresh(lake, settings=refresh_settings)
    )
    out["model"] = anomalies.model_metadata()
    _, out["seconds"]["user_activity"] = timed(
        lambda: refresh_user_activity(lake, settings=refresh_settings)
    )
    cohorts, out["seconds"]["cohort_retention"] = timed(lambda: refresh_cohorts(lake))
    out["cohorts"] = len(cohorts.cohorts)
    result, out["seconds"]["evaluate"] = timed(lambda: evaluate(lake))
    out["evaluation"] = result.as_dict()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["machine"] = {
        "cpus": os.cpu_count(),
        "load_1m": round(os.getloadavg()[0], 2),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    ev = result["evaluation"]
    print(f"{result['ingested']:,} records; seconds: {result['seconds']}")
    print(f"labels: {result['labels']}")
    for rule, s in ev["fraud"].items():
        print(f"  fraud {rule:26} P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f}")
    print(f"  normal purchases flagged: {ev['normal_flagged_rate']:.3%}")
    for method, kinds in ev["anomalies"].items():
        for kind, s in kinds.items():
            print(
                f"  {method:16} {kind:12} P {s['precision']:.3f} R {s['recall']:.3f} "
                f"F1 {s['f1']:.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
