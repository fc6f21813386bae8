"""``tidelake evaluate``: precision, recall and F1 of the fraud rules and anomaly methods against
the simulator's labelled scenarios (:mod:`tidelake.quality.evaluate`)."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from tidelake.lake import Lake
from tidelake.quality.evaluate import Evaluation, evaluate
from tidelake.settings import ConfigError, LakeSettings

EXIT_OK, EXIT_USAGE = 0, 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tidelake evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="score fraud flags and sensor anomalies against the simulator's labels",
        description=(
            "Reads LAKE_URI: the producer ledger's labels against gold/fraud_flags and "
            "gold/sensor_anomalies (run `tidelake refresh` first)."
        ),
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        lake = Lake.from_settings(LakeSettings.from_env())
    except ConfigError as exc:
        sys.stderr.write(f"tidelake evaluate: {exc}\n")
        return EXIT_USAGE
    result = evaluate(lake)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        render(result, Console())
    return EXIT_OK


def render(result: Evaluation, console: Console) -> None:
    """The figures as two tables (rich)."""
    if not result.labelled_purchases and not result.labelled_readings:
        console.print(
            "no labelled scenarios in the ledger: simulate with scenarios (the default), "
            "then `tidelake refresh`"
        )
        return
    fraud = Table(title="fraud rules vs labels")
    for column in ("rule", "precision", "recall", "F1", "tp", "fp", "fn"):
        fraud.add_column(column, justify="left" if column == "rule" else "right")
    for rule, s in result.fraud.items():
        fraud.add_row(
            rule,
            *(f"{s[k]:.3f}" for k in ("precision", "recall", "f1")),
            *(str(int(s[k])) for k in ("tp", "fp", "fn")),
        )
    console.print(fraud)
    console.print(
        f"normal purchases flagged: {result.normal_flagged:,} of {result.normal_purchases:,} "
        f"({result.normal_flagged_rate:.2%}; goal <= 1%)"
    )
    anomalies = Table(title="anomaly methods vs labels")
    for column in ("method", "kind", "precision", "recall", "F1", "tp", "fp", "fn"):
        anomalies.add_column(column, justify="left" if column in {"method", "kind"} else "right")
    for method, kinds in result.anomalies.items():
        for kind, s in kinds.items():
            anomalies.add_row(
                method,
                kind,
                *(f"{s[k]:.3f}" for k in ("precision", "recall", "f1")),
                *(str(int(s[k])) for k in ("tp", "fp", "fn")),
            )
    console.print(anomalies)
