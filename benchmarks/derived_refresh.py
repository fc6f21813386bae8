"""Derived-layer benchmarks: refresh cost as history grows, and gold at one day's scale.

``history`` — does a refresh cost O(touched hours) or O(history)? For each ``--days`` value
(default 1 and 30) it builds a fresh lake with that much closed history in
``bronze/shop_page_views`` (one commit per hour, ``--rows-per-hour`` events, 1 % producer
duplicates, bronze checkpointed as table maintenance would), refreshes silver and gold once
(not timed), then ``--batches`` times appends one micro-batch (``--batch-rows`` events in the
current hour, like the worker) and times the refresh it triggers: silver of the topic,
``gold/events_per_minute`` and ``gold/events_per_hour`` (``tidelake.layers``). The figure is
the ratio of the median refresh time with the most history to that with the least, measured in
the same process: goal ≤ 1.5.

``open-hour`` — what the ingestion worker pays late in an hour: a refresh rewrites whole hour
partitions, so after a micro-batch the open hour is recomputed in full. For each
``--hour-events`` value (default 10k, 100k, 1M: one topic's open hour early, mid and late at
2k events/s over six topics, ~1.2M per topic per hour) a fresh lake gets that many events in the
current hour of ``bronze/shop_page_views`` (one commit per ``--commit-events``), is refreshed
once, then ``--batches`` times gets one ``--batch-rows`` micro-batch and the refresh is timed.
Reported: median seconds per step and the ratio largest/smallest hour (no goal: this is the
cost that bounds gold freshness late in an hour at high rates).

``scale`` — gold on ``--events`` (10M) events of one UTC day: silver is built from synthetic
bronze, then ``gold/events_per_minute`` for the whole day is computed by
``refresh_events_per_minute`` (Polars, per hour) and, in a separate child process, by a plain
``pyarrow`` + ``pandas`` baseline doing the same aggregation over the same silver table. Each
phase runs in its own child process so that its peak RSS (``ru_maxrss``) is its own: goal
≤ 4 GB. The ratio is the rates' (events/s), Tidelake over the baseline.

Usage::

    .venv/bin/python benchmarks/derived_refresh.py history            # 1 vs 30 days
    .venv/bin/python benchmarks/derived_refresh.py scale --events 10000000
    .venv/bin/python benchmarks/derived_refresh.py open-hour --hour-events 10000 100000 1000000
    .venv/bin/python benchmarks/derived_refresh.py history --days 1 3 --rows-per-hour 500 --json

Figures are reported in docs/PERFORMANCE.md ("Derived layers"); nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_lake import PAGE_VIEWS, BronzeWriter, hour_floor, write_history

from tidelake.lake import Lake
from tidelake.layers import (
    refresh_events_per_hour,
    refresh_events_per_minute,
    refresh_silver,
)
from tidelake.settings import RefreshSettings

CONTRACTS = [PAGE_VIEWS]


def refresh_all(lake: Lake, settings: RefreshSettings) -> dict[str, float]:
    """Silver, then both gold tables; seconds per step."""
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    refresh_silver(lake, PAGE_VIEWS, settings=settings)
    t1 = time.perf_counter()
    refresh_events_per_minute(lake, CONTRACTS, settings=settings)
    t2 = time.perf_counter()
    refresh_events_per_hour(lake, settings=settings)
    t3 = time.perf_counter()
    out["silver"], out["events_per_minute"], out["events_per_hour"] = t1 - t0, t2 - t1, t3 - t2
    out["total"] = t3 - t0
    return out


def history_case(days: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    root = work / f"lake-{days}d"
    shutil.rmtree(root, ignore_errors=True)
    lake = Lake(root=str(root), storage_options={})
    settings = RefreshSettings(partitions_start="2020-01-01")
    writer = BronzeWriter(lake)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    history_rows = write_history(writer, now, days * 24, args.rows_per_hour)
    bronze = lake.open(PAGE_VIEWS.bronze_path)
    assert bronze is not None
    bronze.create_checkpoint()
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    refresh_all(lake, settings)
    initial_s = time.perf_counter() - t0
    samples: list[dict[str, float]] = []
    current = hour_floor(now)
    for _ in range(args.batches):
        writer.batch(current, max(1.0, (now - current).total_seconds()), args.batch_rows)
        samples.append(refresh_all(lake, settings))
    bronze = lake.open(PAGE_VIEWS.bronze_path)
    assert bronze is not None
    steps = samples[0].keys()
    return {
        "days": days,
        "history_rows": history_rows,
        "bronze_version": bronze.version(),
        "bronze_files": len(bronze.file_uris()),
        "build_seconds": round(build_s, 2),
        "initial_refresh_seconds": round(initial_s, 2),
        "median_seconds": {k: round(statistics.median(s[k] for s in samples), 4) for k in steps},
        "samples": [{k: round(v, 4) for k, v in s.items()} for s in samples],
    }


def run_history(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="tidelake-refresh-"))
    cases = [history_case(d, args, work) for d in sorted(args.days)]
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    least, most = cases[0], cases[-1]
    ratio = most["median_seconds"]["total"] / least["median_seconds"]["total"]
    return {"benchmark": "refresh_vs_history", "cases": cases, "ratio": round(ratio, 3)}


def open_hour_case(events: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    root = work / f"lake-{events}"
    shutil.rmtree(root, ignore_errors=True)
    lake = Lake(root=str(root), storage_options={})
    settings = RefreshSettings(partitions_start="2020-01-01")
    writer = BronzeWriter(lake)
    now = datetime.now(UTC)
    current = hour_floor(now)
    elapsed = max(1.0, (now - current).total_seconds())
    left = events
    while left > 0:
        n = min(left, args.commit_events)
        writer.batch(current, elapsed, n)
        left -= n
    refresh_all(lake, settings)
    samples = []
    for _ in range(args.batches):
        writer.batch(current, elapsed, args.batch_rows)
        samples.append(refresh_all(lake, settings))
    steps = samples[0].keys()
    return {
        "hour_events": events,
        "median_seconds": {k: round(statistics.median(s[k] for s in samples), 4) for k in steps},
        "samples": [{k: round(v, 4) for k, v in s.items()} for s in samples],
    }


def run_open_hour(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="tidelake-open-hour-"))
    cases = [open_hour_case(n, args, work) for n in sorted(args.hour_events)]
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    ratio = cases[-1]["median_seconds"]["total"] / cases[0]["median_seconds"]["total"]
    return {"benchmark": "refresh_vs_open_hour_size", "cases": cases, "ratio": round(ratio, 3)}


def build_day(root: Path, events: int) -> None:
    """One UTC day (yesterday) of ``events`` bronze events, one commit per hour, then silver."""
    lake = Lake(root=str(root), storage_options={})
    writer = BronzeWriter(lake)
    day = hour_floor(datetime.now(UTC)).replace(hour=0) - timedelta(days=1)
    per_hour = events // 24
    for h in range(24):
        writer.batch(day + timedelta(hours=h), 3600.0, per_hour)
    refresh_silver(lake, PAGE_VIEWS, settings=RefreshSettings(partitions_start="2020-01-01"))


def phase_gold(root: Path) -> dict[str, Any]:
    lake = Lake(root=str(root), storage_options={})
    t0 = time.perf_counter()
    result = refresh_events_per_minute(
        lake, CONTRACTS, settings=RefreshSettings(partitions_start="2020-01-01")
    )
    seconds = time.perf_counter() - t0
    events = sum(h.details.get("events", 0) for h in result.hours)
    return {"seconds": seconds, "events": events, "rows": result.rows}


def phase_baseline(root: Path) -> dict[str, Any]:
    """The same per-minute aggregation with plain pyarrow + pandas, over the whole day."""
    from deltalake import DeltaTable

    t0 = time.perf_counter()
    silver = DeltaTable(str(root / PAGE_VIEWS.silver_path))
    table = silver.to_pyarrow_table(
        columns=["event_id", "event_type", "event_time", "_ingested_at", "_deliveries"]
    )
    df = table.to_pandas()
    df["window_start"] = df["event_time"].dt.floor("min")
    late = (df["_ingested_at"] - df["event_time"]).dt.total_seconds() > 30.0
    df["late"] = late.astype("int64")
    grouped = df.groupby(["event_type", "window_start"]).agg(
        events=("event_id", "nunique"),
        late_events=("late", "sum"),
        deliveries=("_deliveries", "sum"),
    )
    grouped["duplicates"] = grouped["deliveries"] - grouped["events"]
    out = grouped.reset_index()
    out["topic"] = PAGE_VIEWS.name
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "events": int(out["events"].sum()), "rows": len(out)}


def peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``). Not ``ru_maxrss``: Linux keeps that across ``exec``,
    so a child started by a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(phase: str, root: Path) -> dict[str, Any]:
    """Run one phase in a fresh interpreter, so that its peak RSS is its own."""
    code = (
        f"import json,sys,resource; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r});"
        "import derived_refresh as b; from pathlib import Path;"
        f"r = getattr(b, 'phase_' + {phase!r})(Path({str(root)!r}));"
        "r['peak_rss_mb'] = b.peak_rss_mb();"
        "print(json.dumps(r))"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run_scale(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="tidelake-gold-scale-"))
    root = work / "lake"
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    build_day(root, args.events)
    build_s = time.perf_counter() - t0
    gold = child("gold", root)
    baseline = child("baseline", root)
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    rate = lambda r: r["events"] / r["seconds"]  # noqa: E731
    return {
        "benchmark": "gold_at_scale",
        "events": args.events,
        "build_seconds": round(build_s, 1),
        "tidelake": gold,
        "baseline_pyarrow_pandas": baseline,
        "rate_ratio": round(rate(gold) / rate(baseline), 3),
        "same_events": gold["events"] == baseline["events"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    h = sub.add_parser("history", help="refresh cost with 1 vs 30 days of history")
    h.add_argument("--days", type=int, nargs="+", default=[1, 30])
    h.add_argument("--rows-per-hour", type=int, default=2_000)
    h.add_argument("--batch-rows", type=int, default=2_000)
    h.add_argument("--batches", type=int, default=5)
    s = sub.add_parser("scale", help="gold on one day of events vs pyarrow+pandas")
    s.add_argument("--events", type=int, default=10_000_000)
    o = sub.add_parser("open-hour", help="refresh cost as the open hour fills up")
    o.add_argument("--hour-events", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    o.add_argument("--commit-events", type=int, default=50_000)
    o.add_argument("--batch-rows", type=int, default=700)
    o.add_argument("--batches", type=int, default=5)
    for p in (h, s, o):
        p.add_argument("--work-dir", default=None, help="keep the lakes here")
        p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runners = {"history": run_history, "scale": run_scale, "open-hour": run_open_hour}
    result = runners[args.what](args)
    result["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_1m": round(os.getloadavg()[0], 2),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "peak_rss_mb_parent": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.what == "history":
        for c in result["cases"]:
            m = c["median_seconds"]
            print(
                f"{c['days']:>3} days ({c['history_rows']:,} events, "
                f"bronze v{c['bronze_version']}): "
                f"refresh after one batch {m['total']:.3f} s "
                f"(silver {m['silver']:.3f}, per minute {m['events_per_minute']:.3f}, "
                f"per hour {m['events_per_hour']:.3f})"
            )
        print(f"ratio most/least history: {result['ratio']:.2f} (goal <= 1.5)")
    elif args.what == "open-hour":
        for c in result["cases"]:
            m = c["median_seconds"]
            print(
                f"open hour of {c['hour_events']:>9,} events: refresh after one batch "
                f"{m['total']:.3f} s (silver {m['silver']:.3f}, per minute "
                f"{m['events_per_minute']:.3f}, per hour {m['events_per_hour']:.3f})"
            )
        print(f"ratio largest/smallest hour: {result['ratio']:.2f}")
    else:
        g, b = result["tidelake"], result["baseline_pyarrow_pandas"]
        print(
            f"{result['events']:,} events: tidelake {g['seconds']:.1f} s, "
            f"{g['peak_rss_mb']:.0f} MB peak; pyarrow+pandas {b['seconds']:.1f} s, "
            f"{b['peak_rss_mb']:.0f} MB peak; rate ratio {result['rate_ratio']:.2f}; "
            f"same events: {result['same_events']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
