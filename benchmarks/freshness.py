"""Freshness through Dagster: how long after it is produced does an event land in bronze?

The stack is the local one, headless: the embedded broker (Tansu, memory storage), a temporary
local lake, a temporary ``DAGSTER_HOME`` (``tidelake.dagster_home.ensure_dagster_home``) and
``dagster-daemon run -w workspace.yaml`` in a subprocess with ``TIDELAKE_ENV=local`` (so the
per-topic Kafka sensors run by default). The simulator produces ``--rate`` events/s (default 2000)
over every contract topic for ``--minutes`` (default 3); the sensors request ingestion runs, the
daemon launches them, each run drains its topic into bronze.

Per event (every bronze row of the run's topics):

* **produce time** = ``_kafka_timestamp`` (the Kafka message timestamp: librdkafka's CreateTime,
  stamped when the simulator calls ``produce()``);
* **landing time** = the ``commitInfo.timestamp`` of the Delta commit whose ``add`` action wrote
  the Parquet file holding the row (the moment it became visible to readers). ``_ingested_at``
  is stamped before decoding, slightly earlier; its latency is printed as well.

Latency = landing - produce: count, p50, p95, p99, max; overall and "steady" (events produced
after ``--warmup`` seconds, when the daemon, code server and first runs are warm).

Where the time goes: each event's latency is split exactly into
``wait for request`` (produce → the sensor's run request; 0 if the run was requested before the
event was produced), ``launch`` (request → ``RUN_START``: queue, a new run-worker process, loading
the code location) and ``in run`` (``RUN_START`` → Delta commit: resources, engine setup,
consume until ``quiet_seconds`` of silence, decode, two commits). Per run, the event log gives
the step timeline and the engine's ``stage_seconds`` (materialization metadata).

Mix: ``--mix clean`` (default) sends on-time valid events at a steady rate (no late, duplicate or
malformed messages, no bursts) so the figure is reproducible; ``--mix default`` uses the
simulator's defaults (10 % late, 2 % duplicates, 1 % malformed, bursts of 3-8x the rate).

Usage::

    .venv/bin/python benchmarks/freshness.py                    # 3 min at 2k events/s
    .venv/bin/python benchmarks/freshness.py --minutes 1 --json

Not a test: it prints figures; docs/PERFORMANCE.md records them.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from tidelake.broker import EmbeddedBroker
from tidelake.contracts import QUARANTINE_PATH, TOPICS, TopicContract
from tidelake.dagster_home import INGEST_TOPIC_TAG, ensure_dagster_home
from tidelake.kafka_admin import ensure_topics
from tidelake.lake import Lake
from tidelake.settings import KafkaSettings, LakeSettings, Settings
from tidelake.simulator import SimulatorConfig, generate_messages, producer_config, run_simulation

REPO = Path(__file__).resolve().parents[1]
_AMBIENT_ENV = re.compile(r"^(AWS_|KAFKA_|TIDELAKE_)|^(LAKE_URI|DAGSTER_HOME)$")
GOAL_P95_SECONDS = 15.0


@dataclass(frozen=True)
class FreshConfig:
    minutes: float = 3.0
    rate: float = 2000.0
    mix: str = "clean"
    topics: tuple[str, ...] = tuple(TOPICS)
    partitions: int = 3
    warmup: float = 30.0
    drain_timeout: float = 180.0
    seed: int = 0
    quiet_seconds: float | None = None
    """Sets ``TIDELAKE_QUIET_SECONDS`` for the runs; ``None`` keeps the engine default."""
    max_batch_seconds: float | None = None
    """Sets ``TIDELAKE_MAX_BATCH_SECONDS`` for the runs; ``None`` keeps the engine default."""
    work_dir: Path | None = None
    keep: bool = False
    producer: str = "replay"
    """``replay``: send a pre-generated pool of simulator messages at the rate (the testbed's own
    CPU stays ~1% of a core, so the figure is about the pipeline); ``simulator``: generate live
    (costs ~0.6 core at 2k/s on this machine, which the pipeline then competes with)."""


def _pcts(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"count": 0}
    return {
        "count": len(values),
        "mean": float(values.mean()),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
    }


# -- the stack ---------------------------------------------------------------------------------


@contextlib.contextmanager
def dagster_daemon(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``dagster-daemon run`` on the project workspace, in its own process group."""
    binary = Path(sys.executable).with_name("dagster-daemon")
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # code server and run workers join its group
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def simulator_config(cfg: FreshConfig) -> SimulatorConfig:
    duration = cfg.minutes * 60.0
    if cfg.mix == "clean":
        return SimulatorConfig(
            rate=cfg.rate,
            duration=duration,
            seed=cfg.seed,
            topics=cfg.topics,
            late_fraction=0.0,
            very_late_fraction=0.0,
            duplicate_fraction=0.0,
            malformed_fraction=0.0,
            burst_every_seconds=0.0,
            write_ledger=False,
        )
    if cfg.mix == "default":
        return SimulatorConfig(
            rate=cfg.rate,
            duration=duration,
            seed=cfg.seed,
            topics=cfg.topics,
            wait_late=True,
            write_ledger=False,
        )
    raise ValueError(f"mix must be clean or default, not {cfg.mix!r}")


@dataclass
class ReplaySummary:
    """What the replay producer sent (the fields of SimulationSummary the report uses)."""

    delivered: int = 0
    failed: int = 0


REPLAY_POOL = 20_000


def replay(settings: Settings, cfg: FreshConfig) -> ReplaySummary:
    """Send a pool of simulator messages round-robin at ``cfg.rate`` for ``cfg.minutes``.

    Each send gets a fresh Kafka timestamp, which is what latency is measured from; payload
    ``event_id`` s repeat across rounds, which freshness does not look at.
    """
    from confluent_kafka import Producer

    base = SimulatorConfig.bulk(REPLAY_POOL, seed=cfg.seed, topics=cfg.topics)
    pool = [
        (TOPICS[m.topic].physical_topic(settings.kafka.topic_prefix), m.key, m.value)
        for m in generate_messages(base)
    ]
    producer = Producer(producer_config(settings, base))
    result = ReplaySummary()

    def delivered(err: Any, _msg: Any) -> None:
        if err is None:
            result.delivered += 1
        else:
            result.failed += 1

    total = int(cfg.rate * cfg.minutes * 60)
    start = time.monotonic()
    tick = 0.01  # send in 10 ms slices: steady at the second scale, cheap in Python
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - start) * cfg.rate) + 1)
        while sent < due:
            topic, key, value = pool[sent % len(pool)]
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
            except BufferError:
                producer.poll(0.05)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(tick)
    remaining = producer.flush(60)
    result.failed += remaining
    return result


def landed_rows(lake: Lake, contracts: Sequence[TopicContract], prefix: str) -> int:
    """Bronze rows of ``contracts`` plus their quarantine rows (what the runs have committed)."""
    total = 0
    for c in contracts:
        t = lake.open(c.bronze_path)
        if t is not None:
            total += t.to_pyarrow_dataset().count_rows()
    q = lake.open(QUARANTINE_PATH)
    if q is not None:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        topics = [c.physical_topic(prefix) for c in contracts]
        total += q.to_pyarrow_dataset().count_rows(filter=pc.field("_topic").isin(topics))
        _ = ds  # the filter expression needs pyarrow.dataset loaded
    return total


# -- measurements ------------------------------------------------------------------------------


def commit_times(table_dir: Path) -> tuple[dict[str, float], dict[int, float]]:
    """From the Delta log: added file path → commit time (s), and version → commit time (s)."""
    by_file: dict[str, float] = {}
    by_version: dict[int, float] = {}
    for log in sorted((table_dir / "_delta_log").glob("*.json")):
        version = int(log.stem)
        ts: float | None = None
        adds: list[str] = []
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                ts = action["commitInfo"].get("timestamp", 0) / 1000.0
            elif "add" in action:
                adds.append(urllib.parse.unquote(action["add"]["path"]))
        if ts is None:  # no commitInfo: fall back to the log file's mtime
            ts = log.stat().st_mtime
        by_version[version] = ts
        for a in adds:
            by_file[a] = ts
    return by_file, by_version


def event_latencies(table_dir: Path) -> dict[str, np.ndarray]:
    """Per bronze row: produce time, landing (commit) time and _ingested_at, in epoch seconds."""
    by_file, _ = commit_times(table_dir)
    produced, landed, ingested = [], [], []
    for rel, ts in by_file.items():
        t = pq.read_table(table_dir / rel, columns=["_kafka_timestamp", "_ingested_at"])
        k = t.column("_kafka_timestamp").cast("int64").to_numpy(zero_copy_only=False) / 1e6
        i = t.column("_ingested_at").cast("int64").to_numpy(zero_copy_only=False) / 1e6
        produced.append(k)
        ingested.append(i)
        landed.append(np.full(len(k), ts))
    if not produced:
        empty = np.array([], dtype=float)
        return {"produced": empty, "landed": empty, "ingested": empty}
    return {
        "produced": np.concatenate(produced),
        "landed": np.concatenate(landed),
        "ingested": np.concatenate(ingested),
    }


@dataclass
class RunTimeline:
    run_id: str
    topic: str
    status: str
    requested: float
    started: float | None
    ended: float | None
    step_start: float | None = None
    materialized: float | None = None
    step_end: float | None = None
    records: int | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)


def run_timelines(instance: Any, contracts: Sequence[TopicContract]) -> list[RunTimeline]:
    import dagster as dg

    out: list[RunTimeline] = []
    for c in contracts:
        records = instance.get_run_records(filters=dg.RunsFilter(tags={INGEST_TOPIC_TAG: c.name}))
        for r in records:
            run = r.dagster_run
            tl = RunTimeline(
                run_id=run.run_id,
                topic=c.name,
                status=run.status.value,
                requested=r.create_timestamp.timestamp(),
                started=r.start_time,
                ended=r.end_time,
            )
            for e in instance.all_logs(run.run_id):
                de = e.dagster_event
                if de is None:
                    continue
                kind = de.event_type_value
                if kind == "STEP_START":
                    tl.step_start = e.timestamp
                elif kind == "STEP_SUCCESS":
                    tl.step_end = e.timestamp
                elif kind == "ASSET_MATERIALIZATION":
                    mat = de.event_specific_data.materialization
                    if mat.asset_key.path[0] != "bronze":
                        continue
                    tl.materialized = e.timestamp
                    md = mat.metadata
                    if "stage_seconds" in md:
                        tl.stage_seconds = dict(md["stage_seconds"].value)
                    if "records" in md:
                        tl.records = int(md["records"].value)
            out.append(tl)
    return sorted(out, key=lambda t: t.requested)


def attribute(
    produced: np.ndarray, landed: np.ndarray, runs: Sequence[RunTimeline]
) -> dict[str, np.ndarray]:
    """Split each event's latency into wait-for-request, launch and in-run (sums to the total).

    The run that carried an event is the one (of its topic) whose start precedes the commit and
    whose end follows it; events are matched by their commit time.
    """
    runs = [r for r in runs if r.started is not None and r.ended is not None]
    starts = np.array([r.started for r in runs])
    ends = np.array([r.ended for r in runs])
    requests = np.array([r.requested for r in runs])
    wait = np.zeros(len(landed))
    launch = np.zeros(len(landed))
    in_run = np.zeros(len(landed))
    matched = np.zeros(len(landed), dtype=bool)
    for ts in np.unique(landed):
        hit = np.nonzero((starts <= ts + 1e-3) & (ends >= ts - 1e-3))[0]
        if not len(hit):
            continue
        i = hit[0]
        sel = landed == ts
        t0 = produced[sel]
        t1 = np.maximum(t0, requests[i])
        t2 = np.maximum(t1, starts[i])
        wait[sel] = t1 - t0
        launch[sel] = t2 - t1
        in_run[sel] = ts - t2
        matched[sel] = True
    return {"wait_for_request": wait, "launch": launch, "in_run": in_run, "matched": matched}


# -- the run -----------------------------------------------------------------------------------


def _log(msg: str) -> None:
    sys.stderr.write(f"[freshness] {msg}\n")
    sys.stderr.flush()


def run_freshness(cfg: FreshConfig, log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Run the stack for ``cfg.minutes``, drain, and measure every landed event."""
    import dagster as dg

    contracts = [TOPICS[t] for t in cfg.topics]
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    with contextlib.ExitStack() as stack:
        if cfg.work_dir:
            work = cfg.work_dir
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="tl-fresh-"))
                if not cfg.keep
                else tempfile.mkdtemp(prefix="tl-fresh-")
            )
        broker = stack.enter_context(EmbeddedBroker(log_dir=work / "logs"))
        prefix = f"fresh{uuid.uuid4().hex[:6]}."
        kafka = KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=prefix,
            partitions=cfg.partitions,
        )
        ensure_topics(kafka, contracts, partitions=cfg.partitions)
        lake_settings = LakeSettings(uri=str(work / "lake"))
        lake = Lake.from_settings(lake_settings)
        home = ensure_dagster_home(work / "dagster_home")
        env = {k: v for k, v in os.environ.items() if not _AMBIENT_ENV.match(k)}
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "LAKE_URI": str(work / "lake"),
            "TIDELAKE_TOPIC_PREFIX": prefix,
            "TIDELAKE_TOPIC_PARTITIONS": str(cfg.partitions),
            "TIDELAKE_ENV": "local",
            "DAGSTER_HOME": str(home),
        }
        if cfg.quiet_seconds is not None:
            env["TIDELAKE_QUIET_SECONDS"] = str(cfg.quiet_seconds)
        if cfg.max_batch_seconds is not None:
            env["TIDELAKE_MAX_BATCH_SECONDS"] = str(cfg.max_batch_seconds)
        daemon_log = work / "logs" / "daemon.log"
        daemon = stack.enter_context(dagster_daemon(env, daemon_log))
        log(f"daemon pid {daemon.pid}, DAGSTER_HOME={home}, lake={work / 'lake'}, topics {prefix}*")
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))

        settings = Settings(kafka=kafka, lake=lake_settings)
        sim_cfg = simulator_config(cfg)
        summary: list[Any] = []

        def simulate() -> None:
            try:
                if cfg.producer == "replay" and cfg.mix == "clean":
                    summary.append(replay(settings, cfg))
                else:
                    summary.append(run_simulation(settings, sim_cfg, progress=False))
            except Exception as exc:  # reported below
                summary.append(exc)

        sim_started = time.time()
        thread = threading.Thread(target=simulate, name="simulator", daemon=True)
        thread.start()
        load: list[float] = []
        while thread.is_alive():
            thread.join(10.0)
            load.append(os.getloadavg()[0])
            runs = run_timelines_light(instance, contracts)
            rows = landed_rows(lake, contracts, prefix)
            log(
                f"{time.time() - sim_started:5.0f}s: landed {rows:,} rows; "
                f"runs {runs}; load {load[-1]:.1f}"
            )
            if daemon.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited ({daemon.returncode}); see {daemon_log}")
        sim = summary[0]
        if isinstance(sim, Exception):
            raise sim
        sim_ended = time.time()
        log(f"simulator done: {sim.delivered:,} delivered, {sim.failed} failed; draining")
        deadline = time.monotonic() + cfg.drain_timeout
        while True:
            landed = landed_rows(lake, contracts, prefix)
            if landed >= sim.delivered or time.monotonic() > deadline:
                break
            time.sleep(2.0)
        drained = landed >= sim.delivered
        log(f"landed {landed:,}/{sim.delivered:,} ({'drained' if drained else 'NOT drained'})")
        timelines = run_timelines(instance, contracts)

        produced_l, landed_l, ingested_l, parts = [], [], [], {}
        for c in contracts:
            d = event_latencies(work / "lake" / c.bronze_path)
            if not len(d["produced"]):
                continue
            produced_l.append(d["produced"])
            landed_l.append(d["landed"])
            ingested_l.append(d["ingested"])
            parts[c.name] = attribute(
                d["produced"], d["landed"], [r for r in timelines if r.topic == c.name]
            )
        produced = np.concatenate(produced_l)
        landed_at = np.concatenate(landed_l)
        ingested = np.concatenate(ingested_l)
        split = {
            k: np.concatenate([p[k] for p in parts.values()])
            for k in ("wait_for_request", "launch", "in_run", "matched")
        }
        latency = landed_at - produced
        steady = produced >= sim_started + cfg.warmup

        def stats(mask: np.ndarray) -> dict[str, Any]:
            m = mask & split["matched"]
            return {
                "latency": _pcts(latency[mask]),
                "latency_ingested_at": _pcts((ingested - produced)[mask]),
                "split_mean": {
                    k: float(split[k][m].mean()) if m.any() else None
                    for k in ("wait_for_request", "launch", "in_run")
                },
                "split_p95_of_part": {
                    k: float(np.percentile(split[k][m], 95)) if m.any() else None
                    for k in ("wait_for_request", "launch", "in_run")
                },
            }

        done = [r for r in timelines if r.started and r.ended and r.materialized]

        def med(fn: Callable[[RunTimeline], float | None]) -> float | None:
            vals = [v for v in (fn(r) for r in done) if v is not None]
            return statistics.median(vals) if vals else None

        stage_names = sorted({s for r in done for s in r.stage_seconds})
        requests_by_topic: dict[str, list[float]] = {}
        for r in timelines:
            requests_by_topic.setdefault(r.topic, []).append(r.requested)
        gaps = [b - a for v in requests_by_topic.values() for a, b in itertools.pairwise(v)]
        result = {
            "started_at": started_at,
            "machine": {"cpus": os.cpu_count(), "load_1min_samples": load},
            "config": {**asdict(cfg), "work_dir": str(work)},
            "simulator": {
                "delivered": sim.delivered,
                "failed": sim.failed,
                "by_topic": getattr(sim, "by_topic", None),
                "by_kind": getattr(sim, "by_kind", None),
                "seconds": sim_ended - sim_started,
            },
            "landed_rows": landed,
            "drained": drained,
            "all": stats(np.ones(len(latency), dtype=bool)),
            "steady": stats(steady),
            "runs": {
                "count": len(timelines),
                "by_status": _count(r.status for r in timelines),
                "median_request_to_run_start": med(lambda r: r.started - r.requested),  # type: ignore[operator]
                "median_run_start_to_step_start": med(
                    lambda r: (r.step_start - r.started) if r.step_start else None  # type: ignore[operator]
                ),
                "median_step_start_to_materialization": med(
                    lambda r: (r.materialized - r.step_start) if r.step_start else None  # type: ignore[operator]
                ),
                "median_materialization_to_run_end": med(lambda r: r.ended - r.materialized),  # type: ignore[operator]
                "median_run_seconds": med(lambda r: r.ended - r.started),  # type: ignore[operator]
                "median_records_per_run": med(lambda r: r.records),
                "median_stage_seconds": {
                    s: med(lambda r, s=s: r.stage_seconds.get(s))  # type: ignore[misc]
                    for s in stage_names
                },
                "median_request_gap_per_topic": statistics.median(gaps) if gaps else None,
            },
            "daemon_log": str(daemon_log),
        }
        instance.dispose()
        return result


def run_timelines_light(instance: Any, contracts: Sequence[TopicContract]) -> str:
    """``status=count`` of this benchmark's ingestion runs (for progress lines)."""
    import dagster as dg

    counts: dict[str, int] = {}
    for c in contracts:
        for r in instance.get_runs(filters=dg.RunsFilter(tags={INGEST_TOPIC_TAG: c.name})):
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
    return ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())) or "none yet"


def _count(items: Iterator[str] | Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def _f(v: float | None, unit: str = "s") -> str:
    return "-" if v is None else f"{v:.2f}{unit}"


def format_report(res: dict[str, Any]) -> str:
    cfg = res["config"]
    sim = res["simulator"]
    lines = [
        f"Tidelake freshness through Dagster — {res['started_at']}, {res['machine']['cpus']} cores",
        f"{cfg['rate']:g} events/s for {cfg['minutes']:g} min over {len(cfg['topics'])} topics "
        f"({cfg['partitions']} partitions each), mix={cfg['mix']} "
        f"({cfg['producer']} producer); delivered {sim['delivered']:,}, "
        f"landed {res['landed_rows']:,} ({'drained' if res['drained'] else 'NOT drained'})",
        "latency = Delta commit time of the row's file - Kafka message timestamp",
        "",
        f"{'':<28}{'count':>9}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}",
    ]
    for name in ("all", "steady"):
        for label, key in (("commit", "latency"), ("_ingested_at", "latency_ingested_at")):
            s = res[name][key]
            if not s.get("count"):
                continue
            title = f"{name} ({label})" + (f" >{cfg['warmup']:g}s" if name == "steady" else "")
            lines.append(
                f"{title:<28}{s['count']:>9,}{s['p50']:>8.2f}{s['p95']:>8.2f}"
                f"{s['p99']:>8.2f}{s['max']:>8.2f}"
            )
    p95 = res["steady"]["latency"].get("p95")
    if p95 is not None:
        verdict = "meets" if p95 <= GOAL_P95_SECONDS else "MISSES"
        lines.append(f"steady p95 {p95:.1f}s {verdict} the goal of {GOAL_P95_SECONDS:g}s")
    sm = res["steady"]["split_mean"]
    lines += [
        "",
        "where an event's latency goes (steady, mean seconds; parts sum to the latency):",
        f"  wait for the sensor's run request  {_f(sm['wait_for_request'])}",
        f"  request → RUN_START (queue+launch) {_f(sm['launch'])}",
        f"  RUN_START → Delta commit           {_f(sm['in_run'])}",
    ]
    r = res["runs"]
    lines += [
        "",
        f"runs: {r['count']} {r['by_status']}; medians per run:",
        f"  request → RUN_START                {_f(r['median_request_to_run_start'])}",
        f"  RUN_START → STEP_START             {_f(r['median_run_start_to_step_start'])}",
        f"  STEP_START → bronze materialized   {_f(r['median_step_start_to_materialization'])}",
        f"  materialized → run end (checks)    {_f(r['median_materialization_to_run_end'])}",
        f"  run duration                       {_f(r['median_run_seconds'])}",
        f"  records per run                    {r['median_records_per_run']}",
        f"  gap between requests of a topic    {_f(r['median_request_gap_per_topic'])}",
        "  engine stage_seconds: "
        + ", ".join(f"{k} {_f(v)}" for k, v in r["median_stage_seconds"].items()),
        "1-min load average samples: "
        + ", ".join(f"{x:.1f}" for x in res["machine"]["load_1min_samples"]),
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> tuple[FreshConfig, bool]:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="minutes of traffic (default 3)")
    p.add_argument("--rate", type=float, default=2000.0, help="events per second (default 2000)")
    p.add_argument("--mix", choices=("clean", "default"), default="clean")
    p.add_argument("--topics", help="comma-separated logical topics (default: all)")
    p.add_argument("--partitions", type=int, default=3, help="partitions per topic (default 3)")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds excluded from 'steady'")
    p.add_argument("--drain-timeout", type=float, default=180.0)
    p.add_argument("--quiet-seconds", type=float, help="TIDELAKE_QUIET_SECONDS for the runs")
    p.add_argument(
        "--max-batch-seconds", type=float, help="TIDELAKE_MAX_BATCH_SECONDS for the runs"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--producer",
        choices=("replay", "simulator"),
        default="replay",
        help="replay a pre-generated pool (default, clean mix only) or run the simulator live",
    )
    p.add_argument("--work-dir", type=Path, help="keep the stack's files here")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    a = p.parse_args(argv)
    topics = tuple(t.strip() for t in a.topics.split(",")) if a.topics else tuple(TOPICS)
    cfg = FreshConfig(
        minutes=a.minutes,
        rate=a.rate,
        mix=a.mix,
        topics=topics,
        partitions=a.partitions,
        warmup=a.warmup,
        drain_timeout=a.drain_timeout,
        seed=a.seed,
        quiet_seconds=a.quiet_seconds,
        max_batch_seconds=a.max_batch_seconds,
        work_dir=a.work_dir,
        producer=a.producer,
    )
    return cfg, a.json


def main(argv: Sequence[str] | None = None) -> int:
    cfg, as_json = parse_args(argv)
    res = run_freshness(cfg)
    if as_json:
        sys.stderr.write(format_report(res) + "\n")
        sys.stdout.write(json.dumps(res, indent=2) + "\n")
    else:
        sys.stdout.write(format_report(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
