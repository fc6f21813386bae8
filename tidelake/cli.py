"""The ``tidelake`` command line: each engine module registers its own subcommand.

Subcommands: ``simulate`` (tidelake.simulator), ``ingest`` (tidelake.ingest), ``validate``
(tidelake.reconcile), ``dev``/``demo``/``broker`` (tidelake.devstack).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Each module defines ``register(subparsers) -> None`` which adds its parser(s) and sets
# ``func(args) -> int`` as the handler.
COMMAND_MODULES: tuple[str, ...] = (
    "tidelake.ingest",
    "tidelake.reconcile",
    "tidelake.simulator",
    "tidelake.devstack",
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
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
