"""``tidelake ingest``: drain Kafka topics into bronze/quarantine, exactly once."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading

from tidelake.contracts import TOPICS, TopicContract
from tidelake.ingest import IngestEngine, IngestError
from tidelake.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tidelake ingest``."""
    p = sub.add_parser(
        "ingest",
        help="drain Kafka topics into bronze/quarantine Delta tables, exactly once",
        description="Reads KAFKA_BOOTSTRAP_SERVERS, LAKE_URI and the TIDELAKE_* settings.",
    )
    p.add_argument("--once", action="store_true", help="drain every topic to caught-up and exit")
    p.add_argument("--topics", help="comma-separated logical topics (default: all)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between loops")
    p.add_argument("--json", action="store_true", help="print reports as JSON lines")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    from tidelake.settings import ConfigError

    try:
        settings = Settings.from_env()
        if not settings.kafka.bootstrap_servers:
            raise ConfigError(
                "KAFKA_BOOTSTRAP_SERVERS is not set: point it at a broker, or run `tidelake dev`"
            )
        contracts = _select_topics(args.topics)
    except (ConfigError, KeyError) as exc:
        sys.stderr.write(f"tidelake ingest: {exc}\n")
        return 2
    engine = IngestEngine.from_settings(settings)
    stop = threading.Event()
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    failed = False
    while True:
        for contract in contracts:
            try:
                report = engine.ingest_topic(contract)
            except IngestError as exc:
                sys.stderr.write(f"tidelake ingest: {exc}\n")
                failed = True
                continue
            sys.stdout.write(
                (json.dumps(report.to_dict()) if args.json else report.summary()) + "\n"
            )
            sys.stdout.flush()
        if args.once or stop.wait(args.interval):
            return 1 if failed else 0


def _select_topics(spec: str | None) -> list[TopicContract]:
    if not spec:
        return list(TOPICS.values())
    names = [t.strip() for t in spec.split(",") if t.strip()]
    unknown = [n for n in names if n not in TOPICS]
    if unknown:
        raise KeyError(f"unknown topic(s) {unknown}; known: {sorted(TOPICS)}")
    return [TOPICS[n] for n in names]
