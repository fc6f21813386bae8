"""``tidelake refresh``: drain every topic, refresh every stale silver/gold hour, rebuild the marts.

The work is in :mod:`pipeline_defs.refresh_run` (it needs the Dagster definitions); this module
only turns arguments into that call and its result into output and an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any


def run_refresh(args: argparse.Namespace) -> int:
    from pipeline_defs.refresh_run import refresh_everything

    def say(line: str) -> None:
        if not args.json:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    # With --json, stdout carries only the summary: anything a library prints goes to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        summary = refresh_everything(
            say, drain_topics=not args.no_drain, build_warehouse=not args.no_warehouse
        )
    if args.json:
        out: dict[str, Any] = {
            "ok": summary.ok,
            "runs": summary.runs,
            "steps": [s.as_dict() for s in summary.steps],
        }
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        for step in summary.steps:
            state = "ok" if step.ok else "FAILED"
            runs = f"{len(step.runs)} run(s)" if step.runs else "nothing to do"
            sys.stdout.write(f"{step.name}: {state}, {runs}\n")
            for line in step.detail:
                sys.stdout.write(f"  {line}\n")
        sys.stdout.write("REFRESH OK\n" if summary.ok else "REFRESH FAILED\n")
    return 0 if summary.ok else 1


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "refresh",
        help="drain every topic, then refresh every stale silver/gold partition and the marts",
        description=(
            "Headless and in-process, through the same Dagster definitions and the instance of "
            "DAGSTER_HOME: what the sensors would do, once. Exits 1 if a run or a blocking check "
            "fails. Reads KAFKA_BOOTSTRAP_SERVERS, LAKE_URI, TIDELAKE_WAREHOUSE_PATH, DAGSTER_HOME."
        ),
    )
    parser.add_argument("--no-drain", action="store_true", help="do not ingest; derive only")
    parser.add_argument("--no-warehouse", action="store_true", help="skip the dbt build")
    parser.add_argument("--json", action="store_true", help="machine-readable summary")
    parser.set_defaults(func=run_refresh)
