"""``tidelake maintain``: compact closed partitions, checkpoint and vacuum every lake table."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tidelake.contracts import TOPICS
from tidelake.lake import Lake
from tidelake.maintenance import MIN_RETENTION_HOURS, MaintenanceError, maintain_lake
from tidelake.settings import ConfigError, Settings

EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    """Add ``maintain`` to the ``tidelake`` command line."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "maintain",
        help="compact closed partitions, checkpoint and vacuum every lake table",
        description=(
            "Table maintenance of every bronze, silver, gold and quarantine table: compact the "
            "hour partitions closed for TIDELAKE_LATENESS_HORIZON_HOURS (closed days for "
            "quarantine), one partition per commit; checkpoint logs that grew; vacuum files "
            "removed more than --retention-hours ago. Safe beside ingestion and refreshes (a "
            "second maintainer leaves a table alone). Exit 0 when done (skipped partitions "
            "included), 1 when a table failed, 2 on usage or configuration errors."
        ),
    )
    p.add_argument("--dry-run", action="store_true", help="change nothing; report the plan")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.add_argument(
        "--retention-hours",
        type=int,
        default=MIN_RETENTION_HOURS,
        help=f"vacuum retention in hours (at least {MIN_RETENTION_HOURS}, the default)",
    )
    p.set_defaults(func=run_maintain)


def run_maintain(args: argparse.Namespace) -> int:
    """Handler of ``tidelake maintain``: 0 done, 1 a table failed, 2 usage/config."""
    try:
        settings = Settings.from_env()
        reports = maintain_lake(
            Lake.from_settings(settings.lake),
            list(TOPICS.values()),
            settings.refresh,
            retention_hours=args.retention_hours,
            dry_run=args.dry_run,
        )
    except (ConfigError, MaintenanceError) as exc:
        sys.stderr.write(f"tidelake maintain: {exc}\n")
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(json.dumps([r.to_dict() for r in reports], sort_keys=True) + "\n")
    else:
        for r in reports:
            sys.stdout.write(r.summary() + "\n")
        if not reports:
            sys.stdout.write("no tables yet\n")
    return 0 if all(r.ok for r in reports) else 1
