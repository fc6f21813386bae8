"""``tidelake validate``: reconcile the producer ledger with bronze, quarantine and silver."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from tidelake.lake import Lake
from tidelake.quality.reconcile import DEFAULT_SAMPLE_SIZE, EXIT_USAGE, ScopeError, reconcile
from tidelake.settings import ConfigError, Settings


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 date or datetime for ``--since``/``--until``; naive means UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2024-05-01T12:00:00Z"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _topics_arg(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def run_validate(args: argparse.Namespace) -> int:
    """Handler of ``tidelake validate``: prints the report; returns 0 OK, 1 mismatch, 2 usage.

    A mismatch is any disagreement of bronze, quarantine or (where ``silver/<table>`` is built)
    silver with the ledger; a silver table not built yet is reported, never a mismatch.
    """
    try:
        settings = Settings.from_env()
        prefix = settings.kafka.topic_prefix if args.topic_prefix is None else args.topic_prefix
        report = reconcile(
            Lake.from_settings(settings.lake),
            topic_prefix=prefix,
            run_id=args.run_id,
            topics=_topics_arg(args.topic),
            since=args.since,
            until=args.until,
            sample_size=args.samples,
        )
    except (ConfigError, ScopeError) as exc:
        sys.stderr.write(f"tidelake validate: {exc}\n")
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        # Styles only on a terminal: piped or captured output stays plain text. Tables keep
        # their natural width even on a narrow terminal: squeezed, rich would cut figures.
        sys.stdout.write(report.render(args.per_minute, color=sys.stdout.isatty()))
    return report.exit_code


def register(subparsers: Any) -> None:
    """Add ``validate`` to the ``tidelake`` command line."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "validate",
        help="reconcile the producer ledger with bronze, quarantine and silver",
        description=(
            "Compare the producer ledger with the lake per (topic, minute of event_time): "
            "produced vs landed distinct event_ids, missing and unexpected ids, duplicates, "
            "quarantine by reason and Kafka offset coverage; where silver/<table> is built, "
            "silver events vs the ledger and bronze (missing, extra, duplicate ids). "
            "Exit 0 when everything matches, "
            "1 on any mismatch, 2 on usage or configuration errors."
        ),
    )
    p.add_argument("--run-id", help="only this simulator run (other runs' events are ignored)")
    p.add_argument(
        "--topic",
        action="append",
        metavar="TOPIC[,TOPIC]",
        help="logical topic(s) to check (repeatable or comma-separated); default all",
    )
    p.add_argument(
        "--topic-prefix",
        default=None,
        help="physical topic prefix; default TIDELAKE_TOPIC_PREFIX",
    )
    p.add_argument("--since", type=parse_time, help="event_time >= this (ISO 8601, naive = UTC)")
    p.add_argument("--until", type=parse_time, help="event_time < this (ISO 8601, naive = UTC)")
    p.add_argument(
        "--per-minute", action="store_true", help="list every minute, not only mismatches"
    )
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLE_SIZE,
        help=f"sample ids/records listed per kind (default {DEFAULT_SAMPLE_SIZE})",
    )
    handler: Callable[[argparse.Namespace], int] = run_validate
    p.set_defaults(func=handler)
