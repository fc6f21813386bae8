"""``tidelake ingest``: drain Kafka topics into bronze/quarantine, exactly once.

``--follow`` runs the ingestion worker (:mod:`tidelake.ingest.follow`): every topic drained
continuously in one process, each batch recorded in Dagster when ``DAGSTER_HOME`` is set, and
(unless ``TIDELAKE_WORKER_REFRESH=false``) silver and gold refreshed after the batches in the same
process (:mod:`tidelake.layers.follow`, :mod:`pipeline_defs.derive_worker`).
``--accept-gap TOPIC:PARTITION:OFFSET --reason TEXT`` records an operator's acceptance of records
that retention deleted before they were ingested (:mod:`tidelake.ingest.gaps`) instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

from tidelake.contracts import TOPICS, TopicContract
from tidelake.ingest import BatchReport, IngestEngine, IngestError
from tidelake.ingest.follow import Follower
from tidelake.ingest.gaps import GapSpec, accept_gap
from tidelake.lake import Lake
from tidelake.layers.follow import RefreshLoop
from tidelake.quality.outcome import CheckOutcome
from tidelake.settings import ConfigError, Settings

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tidelake ingest``."""
    p = sub.add_parser(
        "ingest",
        help="drain Kafka topics into bronze/quarantine Delta tables, exactly once",
        description=(
            "Reads KAFKA_BOOTSTRAP_SERVERS, LAKE_URI and the TIDELAKE_* settings. Every topic is "
            "attempted even when another fails; the exit status is 1 if any failed."
        ),
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one batch per topic, then exit")
    mode.add_argument(
        "--follow",
        action="store_true",
        help=(
            "run the ingestion worker: drain every topic continuously (one thread per topic) "
            "and record each batch in Dagster (DAGSTER_HOME) until SIGTERM/Ctrl-C"
        ),
    )
    p.add_argument(
        "--no-dagster",
        action="store_true",
        help="with --follow: do not record batches in Dagster even if DAGSTER_HOME is set",
    )
    p.add_argument("--topics", help="comma-separated logical topics (default: all)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between loops")
    p.add_argument("--json", action="store_true", help="print reports as JSON lines")
    p.add_argument(
        "--accept-gap",
        metavar="TOPIC:PARTITION:OFFSET",
        action="append",
        help=(
            "accept that the records of PARTITION below OFFSET (the broker's first retained "
            "offset) are gone, and resume there; recorded in the Delta log (needs --reason)"
        ),
    )
    p.add_argument("--reason", default="", help="why the gap is accepted (with --accept-gap)")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        if not settings.kafka.bootstrap_servers:
            raise ConfigError(
                "KAFKA_BOOTSTRAP_SERVERS is not set: point it at a broker, or run `tidelake dev`"
            )
        gaps = [GapSpec.parse(g) for g in args.accept_gap or []]
        contracts = _select_topics(args.topics) if not gaps else []
        for gap in gaps:
            _select_topics(gap.topic)
    except (ConfigError, KeyError, ValueError) as exc:
        sys.stderr.write(f"tidelake ingest: {exc}\n")
        return EXIT_USAGE
    engine = IngestEngine.from_settings(settings)
    if gaps:
        return _accept_gaps(engine, gaps, args.reason, args.json)
    if args.follow:
        return _follow(settings, contracts, args.json, record=not args.no_dagster)
    stop = threading.Event()
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    failed = False
    while True:
        for contract in contracts:
            failed |= not _one_batch(engine, contract, args.json)
        if args.once or stop.wait(args.interval):
            return EXIT_FAILED if failed else EXIT_OK


def _one_batch(engine: IngestEngine, contract: TopicContract, as_json: bool) -> bool:
    """One batch of one topic; prints its report or its failure. True when it succeeded.

    Any failure of one topic (the broker, the lake, a position out of range) is reported and
    the caller goes on with the next topic: one broken topic never stops the others.
    """
    try:
        report = engine.ingest_topic(contract)
    except Exception as exc:
        partial = getattr(exc, "report", None)
        if partial is not None:
            _print(partial.to_dict() if as_json else partial.summary(), as_json)
        kind = "" if isinstance(exc, IngestError) else f"{type(exc).__name__}: "
        sys.stderr.write(f"tidelake ingest: {contract.name} failed: {kind}{exc}\n")
        if as_json:
            _print({"topic": contract.name, "error": str(exc), "type": type(exc).__name__}, True)
        if not isinstance(exc, IngestError):
            log.debug("traceback of the %s failure", contract.name, exc_info=True)
        return False
    _print(report.to_dict() if as_json else report.summary(), as_json)
    return True


def _follow(settings: Settings, contracts: list[TopicContract], as_json: bool, record: bool) -> int:
    """Run the worker until SIGTERM/SIGINT; 0 once every batch in progress has finished."""
    # The Dagster wiring is imported only here: the engine and the rest of the CLI stay
    # importable without Dagster.
    from pipeline_defs.worker import DagsterBatchRecorder, alert_sender

    recorder = DagsterBatchRecorder.from_env() if record else None

    def on_batch(
        contract: TopicContract, report: BatchReport, outcomes: Mapping[str, CheckOutcome]
    ) -> None:
        _print(report.to_dict() if as_json else report.summary(), as_json)
        if recorder is not None:
            recorder(contract, report, outcomes)

    loop = _refresh_loop(settings, contracts, recorder) if settings.refresh.worker_refresh else None

    def on_batch_then_refresh(
        contract: TopicContract, report: BatchReport, outcomes: Mapping[str, CheckOutcome]
    ) -> None:
        on_batch(contract, report, outcomes)
        if loop is not None and report.records:
            loop.notify()

    follower = Follower(
        lambda: IngestEngine.from_settings(settings),
        contracts,
        on_batch_then_refresh,
        alert_sender(),
    )

    def stop(*_: object) -> None:
        follower.stop()
        if loop is not None:
            loop.stop()

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    log.info(
        "ingestion worker: following %s%s",
        ", ".join(c.name for c in contracts),
        f", recording batches in {os.environ.get('DAGSTER_HOME')}" if recorder else "",
    )
    try:
        if loop is not None:
            loop.start()
        follower.run()
    finally:
        if loop is not None:
            loop.stop()
            loop.join()
        if recorder is not None:
            recorder.close()
    stats = follower.stats
    log.info(
        "ingestion worker stopped: %d batches, %d records, %d failures",
        stats.batches,
        stats.records,
        stats.failures,
    )
    return EXIT_OK


def _refresh_loop(settings: Settings, contracts: list[TopicContract], recorder: Any) -> RefreshLoop:
    """The worker's silver/gold refresh (:mod:`pipeline_defs.derive_worker`), recorded on the
    recorder's instance when there is one."""
    from pipeline_defs.derive_worker import build_refresher
    from pipeline_defs.worker import alert_sender

    refresher = build_refresher(
        Lake.from_settings(settings.lake),
        contracts,
        settings.refresh,
        None if recorder is None else recorder.instance,
    )
    return RefreshLoop(refresher, alert_sender())


def _accept_gaps(engine: IngestEngine, gaps: list[GapSpec], reason: str, as_json: bool) -> int:
    code = EXIT_OK
    for gap in gaps:
        try:
            done = accept_gap(engine, TOPICS[gap.topic], gap.partition, gap.offset, reason)
        except IngestError as exc:
            sys.stderr.write(f"tidelake ingest --accept-gap: {exc}\n")
            code = EXIT_FAILED
            continue
        _print(done.__dict__ if as_json else done.sentence(), as_json)
    return code


def _print(payload: object, as_json: bool) -> None:
    sys.stdout.write((json.dumps(payload) if as_json else str(payload)) + "\n")
    sys.stdout.flush()


def _select_topics(spec: str | None) -> list[TopicContract]:
    if not spec:
        return list(TOPICS.values())
    names = [t.strip() for t in spec.split(",") if t.strip()]
    unknown = [n for n in names if n not in TOPICS]
    if unknown:
        raise KeyError(f"unknown topic(s) {unknown}; known: {sorted(TOPICS)}")
    return [TOPICS[n] for n in names]
