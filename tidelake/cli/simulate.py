"""``tidelake simulate``: the command-line front of the simulator."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from tidelake.contracts import TOPICS, QuarantineReason
from tidelake.settings import ConfigError, Settings
from tidelake.simulator.config import COMPRESSIONS, MALFORMED_REASONS, SimulatorConfig
from tidelake.simulator.runner import SimulationSummary, run_simulation

_DEFAULTS = SimulatorConfig()
_NO_BROKER = (
    "KAFKA_BOOTSTRAP_SERVERS is not set. Point it at a broker "
    "(e.g. KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092), or run `tidelake dev` / `make dev`, "
    "which start the embedded broker and the simulator together."
)


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand to the ``tidelake`` parser."""
    d = _DEFAULTS
    p = subparsers.add_parser(
        "simulate",
        help="produce simulated shop, app and sensor events to Kafka (and the producer ledger)",
        description=(
            "Produce believable events on every contract topic at a bursty rate, with late, "
            "duplicate and malformed messages mixed in; every acknowledged message is appended "
            "to the ledger (_ledger/produced) under LAKE_URI. Fraud and sensor-anomaly "
            "scenarios are mixed in and labelled in the ledger (label: fraud:<rule>, "
            "anomaly:<kind>). Needs KAFKA_BOOTSTRAP_SERVERS."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--rate", type=float, default=d.rate, help="mean events per second")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of traffic; 0 = until Ctrl-C (default 60, or unbounded with --count)",
    )
    p.add_argument("--count", type=int, default=None, help="stop after N messages (all kinds)")
    p.add_argument("--seed", type=int, default=None, help="reproduce a run (default: random)")
    p.add_argument(
        "--max-rate",
        action="store_true",
        help="no pacing, as fast as the producer takes them; fractions default to 0",
    )
    frac = p.add_argument_group("message kinds (each message is exactly one kind)")
    frac.add_argument("--late-fraction", type=float, default=None, help="default 0.1")
    frac.add_argument("--late-min-seconds", type=float, default=d.late_min_seconds)
    frac.add_argument("--late-max-seconds", type=float, default=d.late_max_seconds)
    frac.add_argument(
        "--very-late-fraction",
        type=float,
        default=None,
        help="share with event_time hours in the past (default 0)",
    )
    frac.add_argument("--very-late-min-hours", type=float, default=1.0)
    frac.add_argument("--very-late-max-hours", type=float, default=6.0)
    frac.add_argument("--duplicate-fraction", type=float, default=None, help="default 0.02")
    frac.add_argument("--malformed-fraction", type=float, default=None, help="default 0.01")
    frac.add_argument(
        "--malformed-reasons",
        default=None,
        help="comma list of quarantine reasons to provoke (default all: "
        + ",".join(MALFORMED_REASONS)
        + ")",
    )
    frac.add_argument(
        "--no-wait-late",
        action="store_true",
        help="at the end, send held-back late messages at once instead of waiting for them",
    )
    scen = p.add_argument_group(
        "labelled scenarios and history (ground truth in the ledger's label column)"
    )
    scen.add_argument(
        "--no-scenarios",
        action="store_true",
        help="no fraud or sensor-anomaly scenarios: every ledger label is null",
    )
    scen.add_argument(
        "--fraud-every",
        type=float,
        default=d.fraud_every_purchases,
        help="mean normal purchase events between two fraud scenarios",
    )
    scen.add_argument(
        "--anomaly-every",
        type=float,
        default=d.anomaly_every_readings,
        help="mean normal sensor readings between two anomaly segments",
    )
    scen.add_argument(
        "--days",
        type=int,
        default=d.history_days,
        help="back-fill: spread the run's events over the N UTC days before today, with "
        "returning users (sent at once; 0 = live traffic)",
    )
    p.add_argument("--topics", default=None, help=f"comma list (default all: {','.join(TOPICS)})")
    p.add_argument("--compression", choices=COMPRESSIONS, default=d.compression)
    p.add_argument(
        "--create-topics",
        action="store_true",
        help="create missing topics first (TIDELAKE_TOPIC_PARTITIONS partitions)",
    )
    p.add_argument("--no-ledger", action="store_true", help="do not write _ledger/produced")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=handle)


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Build the run config from parsed arguments (raises ``ConfigError`` on bad values).

    ``--count`` without ``--duration`` runs until the count; otherwise the duration defaults to
    60 s. With ``--max-rate`` the late/duplicate/malformed fractions default to 0 (and no
    scenarios are staged). ``--days N`` back-fills the run's arrivals over the past N days.
    """
    d = _DEFAULTS

    def fraction(value: float | None, name: str) -> float:
        if value is not None:
            return value
        return 0.0 if args.max_rate else float(getattr(d, name))

    duration: float | None = args.duration
    if duration is None and args.count is None:
        duration = d.duration
    reasons = MALFORMED_REASONS
    if args.malformed_reasons:
        names = [r.strip() for r in args.malformed_reasons.split(",") if r.strip()]
        valid = [r.value for r in MALFORMED_REASONS]
        bad = [n for n in names if n not in valid]
        if bad:
            raise ConfigError(f"--malformed-reasons {','.join(bad)}: use {','.join(valid)}")
        reasons = tuple(QuarantineReason(n) for n in names)
    topics = tuple(TOPICS)
    if args.topics:
        topics = tuple(t.strip() for t in args.topics.split(",") if t.strip())
    return SimulatorConfig(
        rate=args.rate,
        duration=duration,
        count=args.count,
        seed=args.seed,
        late_fraction=fraction(args.late_fraction, "late_fraction"),
        late_min_seconds=args.late_min_seconds,
        late_max_seconds=args.late_max_seconds,
        very_late_fraction=fraction(args.very_late_fraction, "very_late_fraction"),
        very_late_min_seconds=args.very_late_min_hours * 3600.0,
        very_late_max_seconds=args.very_late_max_hours * 3600.0,
        duplicate_fraction=fraction(args.duplicate_fraction, "duplicate_fraction"),
        malformed_fraction=fraction(args.malformed_fraction, "malformed_fraction"),
        malformed_reasons=reasons,
        topics=topics,
        compression=args.compression,
        max_rate=args.max_rate,
        wait_late=not args.no_wait_late,
        write_ledger=not args.no_ledger,
        scenarios=not args.no_scenarios,
        fraud_every_purchases=args.fraud_every,
        anomaly_every_readings=args.anomaly_every,
        history_days=args.days,
    )


def handle(args: argparse.Namespace) -> int:
    """Run ``tidelake simulate``: 0 if every message was acknowledged and ledgered, 1 if not,
    2 for a configuration error."""
    err = sys.stderr
    try:
        config = config_from_args(args)
        settings = Settings.from_env()
    except ConfigError as exc:
        err.write(f"tidelake simulate: error: {exc}\n")
        return 2
    if not settings.kafka.bootstrap_servers:
        err.write(f"tidelake simulate: error: {_NO_BROKER}\n")
        return 2

    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            if stop.is_set():
                raise KeyboardInterrupt
            err.write("simulate: stopping (sending held-back late messages; Ctrl-C again aborts)\n")
            stop.set()

        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if args.create_topics:
            from tidelake.kafka_admin import ensure_topics

            ensure_topics(settings.kafka, [TOPICS[t] for t in config.topics])
        summary = run_simulation(settings, config, stop_event=stop, progress=not args.quiet)
    except ConfigError as exc:
        err.write(f"tidelake simulate: error: {exc}\n")
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    err.write(format_summary(summary) + "\n")
    return 0 if summary.ok else 1


def format_summary(summary: SimulationSummary) -> str:
    """A few readable lines: what was delivered, by topic and kind, and any failure."""
    lines = [
        f"simulate: run {summary.run_id} seed {summary.seed}: sent {summary.sent}, "
        f"delivered {summary.delivered}, failed {summary.failed} "
        f"in {summary.elapsed_seconds:.1f}s; ledger rows {summary.ledger_rows}",
        "  by topic: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_topic.items())),
        "  by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_kind.items())),
    ]
    if summary.by_label:
        lines.append(
            "  labelled: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_label.items()))
        )
    if summary.failed:
        lines.append(f"  ERROR: {summary.failed} messages were not acknowledged by the broker")
    if summary.ledger_error:
        lines.append(f"  ERROR: ledger not fully written: {summary.ledger_error}")
    return "\n".join(lines)
