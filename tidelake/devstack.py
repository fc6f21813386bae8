"""The local stack: ``tidelake dev``, ``tidelake demo`` and ``tidelake broker``.

With ``KAFKA_BOOTSTRAP_SERVERS`` unset, each command starts the embedded Kafka-protocol broker
(Tansu) on loopback and creates the contract's topics; with it set, it uses that cluster. The lake
is ``LAKE_URI`` (default ``./.tidelake/lake``), or, with ``--s3``, a bucket on an embedded S3 API
server (moto).

``tidelake dev`` then runs the local pipeline as child processes (:func:`stack_children`): the
ingestion worker ``tidelake ingest --follow`` when ``TIDELAKE_INGEST_MODEL=worker`` (the default;
with ``runs`` or ``tick`` the sensors launch ingestion runs instead), and ``dagster dev`` (web UI +
daemon), or with ``--headless`` only ``dagster-daemon run`` (sensors and schedules, no UI); the
simulator runs in a thread unless ``--no-simulator``. Every child shares one environment
(:func:`child_env`: the broker, the lake, ``DAGSTER_HOME``, the model) and is stopped in order by
:class:`Supervisor`: the worker first, so its last batch commits, then Dagster, then the broker.

The embedded broker keeps its log in memory, so every start is a new, empty cluster whose offsets
begin at 0 again. A lake that already holds another embedded cluster's offsets would make the
engine skip the new records (its Delta positions are ahead) and repeat Kafka coordinates. So, with
the embedded broker, an existing local lake from an earlier session is moved aside to
``.tidelake/archive/<timestamp>/`` (kept, never deleted) before the new session starts.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidelake.settings import ConfigError, LakeSettings, Settings
from tidelake.supervisor import (
    DAGSTER_STOP_GRACE_SECONDS,
    WORKER_STOP_SLACK_SECONDS,
    Child,
    Supervisor,
)

log = logging.getLogger(__name__)

STATE_DIR = Path(".tidelake")
EMBEDDED_MARKER = "_embedded_session"
"""File in a local lake written by the dev stack: the lake was fed by an ephemeral broker."""


@dataclass
class Stack:
    """What a running local stack is made of, and the environment child processes need."""

    settings: Settings
    env: dict[str, str] = field(default_factory=dict)
    embedded_broker: bool = False


def archive_embedded_lake(lake_path: Path, state_dir: Path = STATE_DIR) -> Path | None:
    """Move a local lake fed by an earlier embedded broker aside; return where it went.

    A lake without the marker (user data, or fed by a real cluster) is never touched: the stack
    refuses to start instead (see :func:`start_stack`).
    """
    if not (lake_path / EMBEDDED_MARKER).exists():
        return None
    target = state_dir / "archive" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target.mkdir(parents=True, exist_ok=True)
    dest = target / lake_path.name
    shutil.move(str(lake_path), dest)
    log.info("archived the previous embedded session's lake to %s", dest)
    return dest


@contextlib.contextmanager
def start_stack(
    settings: Settings,
    *,
    s3: bool = False,
    log_dir: Path = STATE_DIR / "logs",
    fresh_lake: bool = True,
) -> Iterator[Stack]:
    """Start what is not configured (broker, S3 server), create topics, yield the stack.

    Raises:
        ConfigError: the embedded broker would feed a local lake that holds data of unknown
            origin (offsets would clash); the message says how to proceed.
    """
    from tidelake.broker import EmbeddedBroker
    from tidelake.kafka_admin import ensure_topics

    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        embedded = not settings.kafka.bootstrap_servers
        if embedded:
            broker = stack.enter_context(EmbeddedBroker(log_dir=log_dir))
            settings = settings.with_bootstrap(broker.bootstrap_servers)
            env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        if s3:
            from tidelake.s3server import EmbeddedS3

            server = stack.enter_context(EmbeddedS3())
            server.create_bucket("tidelake")
            settings = replace(settings, lake=server.lake_settings("tidelake", "lake"))
            env.update(server.env("tidelake", "lake"))
        elif not settings.lake.is_s3:
            lake_path = Path(settings.lake.uri.removeprefix("file://")).resolve()
            if embedded and fresh_lake:
                archive_embedded_lake(lake_path)
                if lake_path.exists() and any(lake_path.iterdir()):
                    raise ConfigError(
                        f"LAKE_URI={lake_path} holds data that did not come from an embedded "
                        "session; the new embedded broker's offsets would clash with it. Point "
                        "LAKE_URI at an empty directory or set KAFKA_BOOTSTRAP_SERVERS to the "
                        "cluster that fed it."
                    )
                lake_path.mkdir(parents=True, exist_ok=True)
                (lake_path / EMBEDDED_MARKER).write_text(
                    f"fed by an embedded broker session started {datetime.now(UTC).isoformat()}\n"
                )
            settings = replace(settings, lake=replace(settings.lake, uri=str(lake_path)))
            env["LAKE_URI"] = str(lake_path)
        created = ensure_topics(settings.kafka)
        log.info("topics ready: %s", ", ".join(f"{t} ({n})" for t, n in sorted(created.items())))
        yield Stack(settings=settings, env=env, embedded_broker=embedded)


def _simulator_thread(
    settings: Settings, rate: float, duration: float | None, seed: int | None
) -> tuple[threading.Thread, threading.Event, list[object]]:
    from tidelake.simulator import SimulatorConfig, run_simulation

    stop = threading.Event()
    result: list[object] = []
    config = SimulatorConfig(rate=rate, duration=duration or None, seed=seed)

    def run() -> None:
        try:
            result.append(run_simulation(settings, config, stop_event=stop, progress=False))
        except Exception as exc:  # surfaced by the caller; the thread must not die silently
            log.exception("simulator failed")
            result.append(exc)

    thread = threading.Thread(target=run, name="simulator", daemon=True)
    thread.start()
    return thread, stop, result


# -- tidelake dev ------------------------------------------------------------------------------


def stack_children(
    *,
    ingest_model: str,
    headless: bool,
    workspace: Path,
    host: str = "127.0.0.1",
    port: int = 3000,
    worker_grace_seconds: float = 120.0,
) -> list[Child]:
    """The processes of a local stack, in start order; :class:`Supervisor` stops them in it too.

    Rules:

    * With ``TIDELAKE_INGEST_MODEL=worker`` the ingestion worker ``tidelake ingest --follow`` runs;
      with ``runs`` or ``tick`` there is none, because the sensors launch ingestion runs.
    * Headless runs ``dagster-daemon run`` (sensors, schedules, the run queue): the pipeline of
      ``dagster dev`` without its web UI.
    * The worker comes first, so on the way down it gets SIGTERM first and commits the batches in
      progress while the broker and Dagster's storage are still there.
    """
    children: list[Child] = []
    if ingest_model == "worker":
        children.append(
            Child(
                "worker",
                (sys.executable, "-m", "tidelake.cli", "ingest", "--follow"),
                signal.SIGTERM,
                worker_grace_seconds,
            )
        )
    if headless:
        argv: tuple[str, ...] = (_console_script("dagster-daemon"), "run", "-w", str(workspace))
        children.append(Child("dagster-daemon", argv, signal.SIGINT, DAGSTER_STOP_GRACE_SECONDS))
    else:
        argv = (sys.executable, "-m", "dagster", "dev", "-w", str(workspace))
        argv += ("-h", host, "-p", str(port))
        children.append(Child("dagster dev", argv, signal.SIGINT, DAGSTER_STOP_GRACE_SECONDS))
    return children


def child_env(
    base: Mapping[str, str], stack_env: Mapping[str, str], dagster_home: Path, ingest_model: str
) -> dict[str, str]:
    """The environment of every child: ours, then what the stack started (broker, lake, S3).

    ``TIDELAKE_INGEST_MODEL`` is pinned to the model whose processes were started, so the
    daemon's sensors and the worker agree; ``TIDELAKE_ENV`` defaults to ``local`` (sensors on).
    """
    env = dict(base) | dict(stack_env)
    env["DAGSTER_HOME"] = str(dagster_home)
    env["TIDELAKE_INGEST_MODEL"] = ingest_model
    env.setdefault("TIDELAKE_ENV", "local")
    return env


def _console_script(name: str) -> str:
    """A console script of this environment (beside the interpreter), else from ``PATH``."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    return shutil.which(name) or name


def workspace_file(cwd: Path | None = None) -> Path:
    """``workspace.yaml`` of the code location, in the directory the stack is started from.

    Raises:
        ConfigError: there is none (``tidelake dev`` runs from the repository root).
    """
    path = (cwd or Path.cwd()) / "workspace.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no workspace.yaml in {path.parent}; run tidelake dev from the repository root"
        )
    return path.resolve()


def run_dev(args: argparse.Namespace) -> int:
    """The local stack until Ctrl-C/SIGTERM: broker, simulator, worker and Dagster.

    ``--headless`` runs the daemon instead of ``dagster dev``; ``--no-simulator`` leaves the
    traffic to the caller. Exit 0 when every child stopped cleanly when asked; otherwise 1, or
    the status of the child whose exit ended the stack.
    """
    from tidelake.dagster_home import ensure_dagster_home

    settings = Settings.from_env()
    workspace = workspace_file()
    home = ensure_dagster_home()
    children = stack_children(
        ingest_model=settings.ingest_model,
        headless=args.headless,
        workspace=workspace,
        host=args.host,
        port=args.port,
        worker_grace_seconds=settings.ingest.max_batch_seconds + WORKER_STOP_SLACK_SECONDS,
    )
    # `kill <pid>` stops the stack like Ctrl-C does; until the children run, as an exception.
    previous_term = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        with start_stack(settings, s3=args.s3) as stack:
            env = child_env(os.environ, stack.env, home, settings.ingest_model)
            return _supervise(args, stack, env, children, home)
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def _supervise(
    args: argparse.Namespace,
    stack: Stack,
    env: dict[str, str],
    children: list[Child],
    home: Path,
) -> int:
    supervisor = Supervisor(env)
    stop = threading.Event()

    # From here a signal only sets a flag: an exception between a Popen and its bookkeeping
    # would orphan a child. A second signal kills whatever is still stopping.
    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            supervisor.hurry()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    simulator = None
    if not args.no_simulator:
        simulator = _simulator_thread(stack.settings, args.rate, None, args.seed)
    exited: tuple[str, int] | None = None
    try:
        for child in children:
            if stop.is_set():
                break
            supervisor.start(child)
        _say(_banner(args, stack, supervisor.pids(), home))
        exited = supervisor.wait_any(stop)
        if exited is not None:
            _say(f"{exited[0]} exited with status {exited[1]}; stopping the stack...")
        else:
            _say("stopping...")
    finally:
        stop.set()
        if simulator is not None:
            simulator[1].set()
            simulator[0].join(30)
        stopped = supervisor.stop_all()
    for s in stopped:
        how = "killed" if s.killed else f"exit status {s.returncode}"
        _say(f"  {s.name} (pid {s.pid}) stopped: {how}")
    if exited is not None:
        return _exit_status(exited[1]) or 1
    return 0 if all(s.clean for s in stopped) else 1


def _exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _banner(args: argparse.Namespace, stack: Stack, pids: Mapping[str, int], home: Path) -> str:
    model = stack.settings.ingest_model
    if "worker" in pids:
        ingestion = f"worker `tidelake ingest --follow` (pid {pids['worker']})"
    else:
        ingestion = f"{model}: the Kafka sensors launch ingestion runs"
    simulator = (
        "off (--no-simulator)"
        if args.no_simulator
        else f"~{args.rate:g} events/s (late, duplicate and malformed mixed in)"
    )
    if args.headless:
        dagster = f"daemon only, no web UI (pid {pids.get('dagster-daemon', '-')})"
    else:
        dagster = f"http://{args.host}:{args.port}"
    return (
        f"Tidelake {'headless ' if args.headless else ''}dev stack\n"
        f"  Kafka      {stack.settings.kafka.bootstrap_servers}"
        f"{' (embedded)' if stack.embedded_broker else ''}\n"
        f"  lake       {stack.settings.lake.uri}\n"
        f"  ingestion  {ingestion}\n"
        f"  simulator  {simulator}\n"
        f"  Dagster    {dagster}  (DAGSTER_HOME={home})\n"
        f"  Ctrl-C or SIGTERM stops everything."
    )


# -- tidelake demo -----------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    """Headless: simulate ``--duration`` s while ingesting in micro-batches; drain; reconcile."""
    from tidelake.ingest import IngestEngine
    from tidelake.lake import Lake
    from tidelake.quality.reconcile import reconcile
    from tidelake.simulator import SimulationSummary

    settings = Settings.from_env()
    if not settings.kafka.bootstrap_servers and not settings.lake.is_s3 and not args.s3:
        demo_lake = STATE_DIR / "demo" / "lake"
        if demo_lake.exists():
            shutil.rmtree(demo_lake)
        settings = replace(settings, lake=LakeSettings(uri=str(demo_lake)))
    with start_stack(settings, s3=args.s3, fresh_lake=False) as stack:
        engine = IngestEngine.from_settings(stack.settings)
        _say(
            f"Demo: {args.duration:g} s of simulated traffic at ~{args.rate:g} events/s into "
            f"{stack.settings.kafka.bootstrap_servers}; lake {stack.settings.lake.uri}"
        )
        thread, _stop, result = _simulator_thread(
            stack.settings, args.rate, args.duration, args.seed
        )
        started = time.monotonic()
        while thread.is_alive():
            for report in engine.ingest_all():
                if report.records:
                    _say(f"  [{time.monotonic() - started:5.1f}s] {report.summary()}")
            thread.join(args.interval)
        _say("simulator finished; draining what is left...")
        for report in engine.ingest_all():
            if report.records:
                _say(f"  [{time.monotonic() - started:5.1f}s] {report.summary()}")
        outcome = result[0] if result else None
        if not isinstance(outcome, SimulationSummary):
            _say(f"simulator failed: {outcome}")
            return 1
        _say(
            f"simulator run {outcome.run_id}: {outcome.delivered} messages acknowledged "
            f"({', '.join(f'{k}={v}' for k, v in sorted(outcome.by_kind.items()))})"
        )
        refreshed = _demo_refresh(stack)
        lake = Lake.from_settings(stack.settings.lake)
        reconciliation = reconcile(
            lake, topic_prefix=stack.settings.kafka.topic_prefix, run_id=outcome.run_id
        )
        _say(_gold_figures(lake))
        _say(reconciliation.render())
        ok = reconciliation.ok and refreshed
        _say("RECONCILIATION PASSED" if ok else "RECONCILIATION FAILED")
        return 0 if ok else 1


def _demo_refresh(stack: Stack) -> bool:
    """``tidelake refresh`` (derive + warehouse; the demo has drained) on the demo's own lake,
    Dagster home and warehouse. The Dagster resources read the process environment when a run
    executes, so the stack's settings are exported first."""
    from pipeline_defs.refresh_run import refresh_everything
    from tidelake.dagster_home import ensure_dagster_home

    demo = STATE_DIR / "demo"
    os.environ.update(stack.env)
    os.environ["LAKE_URI"] = stack.settings.lake.uri
    os.environ.setdefault("TIDELAKE_WAREHOUSE_PATH", str(demo / "warehouse.duckdb"))
    os.environ["DAGSTER_HOME"] = str(ensure_dagster_home(demo / "dagster"))
    _say("refreshing silver, gold and the marts (tidelake refresh)...")
    summary = refresh_everything(lambda line: _say(f"  {line}"), drain_topics=False)
    for step in summary.steps:
        _say(f"  {step.name}: {'ok' if step.ok else 'FAILED'}, {len(step.runs)} run(s)")
        for line in step.detail:
            _say(f"    {line}")
    return summary.ok


def _gold_figures(lake: Any) -> str:
    """Per topic: events, late events and duplicates removed, from gold/events_per_hour."""
    from tidelake.layers.gold import EVENTS_PER_HOUR_PATH

    table = lake.open(EVENTS_PER_HOUR_PATH)
    if table is None:
        return "gold: not built"
    import polars as pl

    columns = ["topic", "events", "late_events", "duplicates"]
    frame = pl.DataFrame(table.to_pyarrow_table(columns=columns))
    per_topic = frame.group_by("topic").sum().sort("topic")
    lines = ["gold/events_per_hour per topic:  events  late  duplicates removed"]
    lines.extend(
        f"  {r['topic']:<24} {r['events']:>7} {r['late_events']:>5} {r['duplicates']:>8}"
        for r in per_topic.iter_rows(named=True)
    )
    return "\n".join(lines)


# -- tidelake broker ---------------------------------------------------------------------------


def run_broker(args: argparse.Namespace) -> int:
    """Run only the embedded broker (and topics) in the foreground, for separate processes."""
    settings = Settings.from_env()
    if settings.kafka.bootstrap_servers:
        _say("KAFKA_BOOTSTRAP_SERVERS is set; there is nothing to start.")
        return 2
    from tidelake.broker import EmbeddedBroker
    from tidelake.kafka_admin import ensure_topics

    with EmbeddedBroker(port=args.port, log_dir=STATE_DIR / "logs") as broker:
        ensure_topics(settings.with_bootstrap(broker.bootstrap_servers).kafka)
        _say(
            f"embedded broker at {broker.bootstrap_servers}; in other shells:\n"
            f"  export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}\n"
            f"Ctrl-C stops it."
        )
        with contextlib.suppress(KeyboardInterrupt):
            while broker.is_running():
                time.sleep(1)
    return 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
