"""Cohort retention at scale: ``--days`` (30) x ``--users`` (100k) through ``gold/user_activity``.

Builds a synthetic ``gold/user_activity`` (each user a first day and returns with a decaying
probability, active 1-3 hours per active day), then in a fresh child process times
:func:`tidelake.layers.cohorts.refresh_cohorts` from scratch (every cohort written) and again
after one late user-day (only the changed cohorts rewritten), reporting seconds and the child's
peak RSS (``VmHWM``). The Spark issue compares against these figures.

Usage::

    .venv/bin/python benchmarks/cohorts_scale.py --days 30 --users 100000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tidelake.lake import Lake
from tidelake.layers.cohorts import USER_ACTIVITY_PATH, USER_ACTIVITY_SCHEMA, refresh_cohorts


def build(root: Path, days: int, users: int, seed: int) -> int:
    """The synthetic activity table; returns its rows."""
    rng = np.random.default_rng(seed)
    today = datetime.now(UTC).date()
    start = today - timedelta(days=days - 1)
    first = rng.integers(0, days, users)
    user_idx, day_idx = [np.arange(users)], [first]
    for gap in range(1, days):
        back = rng.random(users) < 0.45 * 0.85 ** (gap - 1)
        ok = back & (first + gap < days)
        user_idx.append(np.nonzero(ok)[0])
        day_idx.append(first[ok] + gap)
    u = np.concatenate(user_idx)
    d = np.concatenate(day_idx)
    hours = rng.integers(1, 4, u.size)
    u = np.repeat(u, hours)
    d = np.repeat(d, hours)
    h = rng.integers(0, 24, u.size).astype(np.int32)
    dates = (np.datetime64(start) + d.astype("timedelta64[D]")).astype("datetime64[D]")
    table = pa.table(
        {
            "user_id": pa.array(np.char.add("u", u.astype(str))),
            "event_date": pa.array(dates),
            "event_hour": pa.array(h),
        }
    )
    table = table.group_by(["user_id", "event_date", "event_hour"]).aggregate([])
    table = table.select(USER_ACTIVITY_SCHEMA.names).cast(USER_ACTIVITY_SCHEMA)
    lake = Lake(root=str(root), storage_options={})
    write_deltalake(lake.uri(USER_ACTIVITY_PATH), table, partition_by=["event_date"])
    return table.num_rows


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def child(root: Path) -> dict[str, Any]:
    lake = Lake(root=str(root), storage_options={})
    t0 = time.perf_counter()
    full = refresh_cohorts(lake)
    t1 = time.perf_counter()
    late = pa.table(
        {
            "user_id": ["u0"],
            "event_date": [date.today() - timedelta(days=3)],
            "event_hour": pa.array([5], pa.int32()),
        }
    ).cast(USER_ACTIVITY_SCHEMA)
    write_deltalake(lake.uri(USER_ACTIVITY_PATH), late, mode="append", partition_by=["event_date"])
    t2 = time.perf_counter()
    again = refresh_cohorts(lake)
    t3 = time.perf_counter()
    return {
        "full_seconds": round(t1 - t0, 2),
        "full_cohorts": len(full.cohorts),
        "full_rows": full.rows,
        "late_seconds": round(t3 - t2, 2),
        "late_cohorts_rewritten": len(again.cohorts),
        "peak_rss_mb": vm_hwm_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child))))
        return 0
    work = Path(tempfile.mkdtemp(prefix="tidelake-cohorts-"))
    try:
        rows = build(work / "lake", args.days, args.users, args.seed)
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(work / "lake")],
            check=True,
            capture_output=True,
            text=True,
        )
        result = {"days": args.days, "users": args.users, "activity_rows": rows}
        result |= json.loads(out.stdout.strip().splitlines()[-1])
        result["machine"] = {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.days} days x {args.users:,} users ({rows:,} activity rows): full "
            f"{result['full_seconds']} s, after one late user-day {result['late_seconds']} s "
            f"({result['late_cohorts_rewritten']} cohorts rewritten), "
            f"peak {result['peak_rss_mb']} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
