"""``tidelake dev``, ``tidelake demo`` and ``tidelake broker``: the local stack commands."""

from __future__ import annotations

import argparse
import sys

from tidelake.devstack import run_broker, run_demo, run_dev
from tidelake.settings import ConfigError


def _guard(func: object) -> object:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))  # type: ignore[operator]
        except ConfigError as exc:
            sys.stderr.write(f"tidelake {args.command}: {exc}\n")
            return 2

    return run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dev``, ``demo`` and ``broker``."""
    dev = sub.add_parser(
        "dev",
        help=(
            "embedded broker + simulator + ingestion worker + `dagster dev` "
            "(Ctrl-C or SIGTERM stops all)"
        ),
        description=(
            "The local pipeline: the embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set, the "
            "simulator, the ingestion worker `tidelake ingest --follow` (TIDELAKE_INGEST_MODEL="
            "worker, the default; with runs or tick the sensors launch ingestion runs instead) "
            "and `dagster dev`. It uses LAKE_URI and DAGSTER_HOME when they are set. Ctrl-C or "
            "SIGTERM stops the worker first (it commits the batches in progress), then Dagster, "
            "then the broker."
        ),
    )
    dev.add_argument("--rate", type=float, default=20.0, help="simulated events/s (default 20)")
    dev.add_argument("--seed", type=int, default=None)
    dev.add_argument("--host", default="127.0.0.1", help="web UI host (not with --headless)")
    dev.add_argument("--port", type=int, default=3000, help="web UI port (not with --headless)")
    dev.add_argument("--s3", action="store_true", help="lake on an embedded S3 API server")
    dev.add_argument(
        "--headless",
        action="store_true",
        help="no web UI: `dagster-daemon run` (sensors, schedules) instead of `dagster dev`",
    )
    dev.add_argument(
        "--no-simulator",
        action="store_true",
        help="produce no traffic (feed the topics yourself, e.g. from a benchmark)",
    )
    dev.set_defaults(func=_guard(run_dev))

    demo = sub.add_parser(
        "demo", help="headless: simulate ~1 min, ingest in micro-batches, drain, reconcile"
    )
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    demo.add_argument("--rate", type=float, default=200.0, help="simulated events/s")
    demo.add_argument("--seed", type=int, default=None)
    demo.add_argument("--interval", type=float, default=5.0, help="seconds between batches")
    demo.add_argument("--s3", action="store_true", help="lake on an embedded S3 API server")
    demo.set_defaults(func=_guard(run_demo))

    broker = sub.add_parser("broker", help="run only the embedded broker, with the topics")
    broker.add_argument("--port", type=int, default=None)
    broker.set_defaults(func=_guard(run_broker))
