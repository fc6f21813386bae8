"""``tidelake quarantine replay``: move quarantined records that now pass the contract to bronze."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from tidelake.contracts import TOPICS, TopicContract
from tidelake.ingest.replay import replay_quarantine
from tidelake.ingest.replay_result import ReplayUsageError
from tidelake.lake import Lake
from tidelake.settings import ConfigError, Settings

EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    """Add ``quarantine`` (with its ``replay`` subcommand) to the ``tidelake`` command line."""
    group: argparse.ArgumentParser = subparsers.add_parser(
        "quarantine",
        help="work with the quarantine table (replay records that now pass the contract)",
        description="Commands on the quarantine table. Settings come from env vars.",
    )
    sub = group.add_subparsers(dest="quarantine_command", required=True)
    p: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="re-validate quarantined records; move those that now pass into bronze",
        description=(
            "Re-validate quarantined records with the current contract and limits "
            "(TIDELAKE_MAX_MESSAGE_BYTES, TIDELAKE_MAX_FUTURE_SECONDS) and move those that now "
            "pass into bronze/<table> with their original Kafka coordinates and _ingested_at. "
            "Records that still fail stay in quarantine untouched. Safe to re-run and to run "
            "beside ingestion. Exit 0 when done (even if nothing moved), 1 when a topic failed "
            "(the others are still processed), 2 on usage or configuration errors."
        ),
    )
    p.add_argument(
        "--topic",
        action="append",
        metavar="TOPIC[,TOPIC]",
        help="logical topic(s) to replay (repeatable or comma-separated); default all",
    )
    p.add_argument("--reason", help="only records quarantined for this reason, e.g. oversized")
    p.add_argument("--dry-run", action="store_true", help="change nothing; report what would move")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    """Handler of ``tidelake quarantine replay``: 0 done, 1 a topic failed, 2 usage/config."""
    try:
        contracts = select_topics(args.topic)
        settings = Settings.from_env()
        result = replay_quarantine(
            Lake.from_settings(settings.lake),
            settings.kafka,
            settings.ingest,
            contracts=contracts,
            reason=args.reason,
            dry_run=args.dry_run,
        )
    except (ConfigError, ReplayUsageError) as exc:
        sys.stderr.write(f"tidelake quarantine replay: {exc}\n")
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), sort_keys=True) + "\n")
    else:
        sys.stdout.write(result.render())
    for failed in result.failed:
        sys.stderr.write(f"tidelake quarantine replay: {failed.topic} failed: {failed.error}\n")
    return result.exit_code


def select_topics(values: Sequence[str] | None) -> list[TopicContract]:
    """The contracts named by ``--topic`` (all when none); unknown names are a usage error."""
    if not values:
        return list(TOPICS.values())
    names = [t.strip() for v in values for t in v.split(",") if t.strip()]
    unknown = [n for n in names if n not in TOPICS]
    if unknown:
        raise ReplayUsageError(
            f"unknown topic(s) {', '.join(unknown)}; valid topics: {', '.join(sorted(TOPICS))}"
        )
    return [TOPICS[n] for n in dict.fromkeys(names)]
