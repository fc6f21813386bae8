"""``tidelake audit``: the whole-table audit of every (or the given) topic's bronze table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from tidelake.lake import Lake
from tidelake.quality.audit import EXIT_USAGE, AuditUsageError, audit_bronze, contracts_named
from tidelake.settings import ConfigError, Settings


def _names(values: Sequence[str] | None) -> list[str]:
    return [t.strip() for v in values or [] for t in v.split(",") if t.strip()]


def run_audit(args: argparse.Namespace) -> int:
    """Handler of ``tidelake audit``: prints one line per topic and check (or JSON);
    returns 0 when every check passed, 1 when any failed, 2 on usage or configuration errors."""
    try:
        contracts = contracts_named(_names(args.topics))
        settings = Settings.from_env()
        lake = Lake.from_settings(settings.lake)
    except (ConfigError, AuditUsageError) as exc:
        sys.stderr.write(f"tidelake audit: {exc}\n")
        return EXIT_USAGE
    report = audit_bronze(lake, settings.kafka, contracts)
    sys.stdout.write(report.to_json() + "\n" if args.json else report.render())
    return report.exit_code


def register(subparsers: Any) -> None:
    """Add ``audit`` to the ``tidelake`` command line."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "audit",
        help="check every bronze table in full: duplicates, lost offsets, schema",
        description=(
            "Run the bronze checks over the whole history of each topic's bronze table (with "
            "quarantine and the commit log): unique Kafka coordinates, contiguous offsets "
            "(skipped and accepted offsets are counted, not failures) and the contract schema. "
            "The checks after each ingestion run look only at what that run added, so this is "
            "what keeps reporting an old gap or duplicate. Reads LAKE_URI, TIDELAKE_TOPIC_PREFIX "
            "and TIDELAKE_CONSUMER_GROUP; needs no Kafka. A table that does not exist yet passes. "
            "Exit 0 when every check passed, 1 when any failed, 2 on usage or configuration "
            "errors."
        ),
    )
    p.add_argument(
        "--topics",
        "--topic",
        dest="topics",
        action="append",
        metavar="TOPIC[,TOPIC]",
        help="logical topic(s) to audit (repeatable or comma-separated); default all",
    )
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=run_audit)
