"""The ``tidelake`` command line: a thin entry that dispatches to one module per command group.

``ingest`` (tidelake.cli.ingest), ``validate`` (tidelake.cli.validate), ``simulate``
(tidelake.cli.simulate), ``dev``/``demo``/``broker`` (tidelake.cli.dev), ``quarantine``
(tidelake.cli.quarantine), ``audit`` (tidelake.cli.audit), ``maintain``
(tidelake.cli.maintain), ``refresh`` (tidelake.cli.refresh), ``evaluate``
(tidelake.cli.evaluate). Engine modules never parse
arguments; these modules turn arguments into calls of the engine.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Sequence

# Each command module defines ``register(subparsers) -> None`` which adds its parser(s) and sets
# ``func(args) -> int`` as the handler.
COMMAND_MODULES: tuple[str, ...] = (
    "tidelake.cli.ingest",
    "tidelake.cli.validate",
    "tidelake.cli.simulate",
    "tidelake.cli.dev",
    "tidelake.cli.quarantine",
    "tidelake.cli.audit",
    "tidelake.cli.refresh",
    "tidelake.cli.maintain",
    "tidelake.cli.evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidelake",
        description="Tidelake: Kafka → Delta Lake, exactly once. Settings come from env vars.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Opening a Dagster instance runs its schema migrations' INFO chatter through alembic.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
