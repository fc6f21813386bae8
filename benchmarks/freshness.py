"""Freshness through Dagster: how long after it is produced does an event land in bronze, and
what does it cost, under each ingestion model?

``--models runs,tick,worker`` (default: all three) runs each model in turn, in one invocation, on
the same machine, with the same traffic. Each model gets a fresh stack on the one embedded broker
(Tansu, memory storage): new topics (a new prefix), a new local lake, a new ``DAGSTER_HOME``
(``tidelake.dagster_home.ensure_dagster_home``) and ``dagster-daemon run -w workspace.yaml`` in a
subprocess with ``TIDELAKE_ENV=local`` and ``TIDELAKE_INGEST_MODEL=<model>``:

* ``runs``: the per-topic sensors request one run of ``ingest_<table>`` per micro-batch;
* ``tick``: ``kafka_pending_topics_sensor`` requests one ``ingest_bronze`` run per tick for every
  pending topic (one process, the topics in turn);
* ``worker``: the daemon still runs (its sensors only observe lag) and the ingestion worker
  ``tidelake ingest --follow --json`` runs beside it with the daemon's environment, recording
  each batch in the same ``DAGSTER_HOME``.

Traffic starts once the daemon evaluates sensors (and the worker is following). The replay
producer sends ``--rate`` events/s (default 2000) over every contract topic for ``--minutes``
(default 3) per model.

Per event (every bronze row of the model's topics):

* **produce time** = ``_kafka_timestamp`` (the Kafka message timestamp: librdkafka's CreateTime,
  stamped when the producer calls ``produce()``);
* **landing time** = the ``commitInfo.timestamp`` of the Delta commit whose ``add`` action wrote
  the Parquet file holding the row (the moment it became visible to readers). ``_ingested_at``
  is stamped before decoding, slightly earlier; its latency is printed as well.

Latency = landing - produce: count, p50, p95, p99, max; overall and "steady" (events produced
after ``--warmup`` seconds).

Silver and gold: under ``worker`` the ingestion worker refreshes ``silver/<table>`` and
``gold/events_per_minute``/``events_per_hour`` itself after its batches
(``TIDELAKE_WORKER_REFRESH``, default on; ``--no-worker-refresh`` measures the run path instead);
otherwise the code location's ``touched_partitions_sensor`` (every 5 s) requests one
``refresh_derived`` run at a time over the stale hours. Every derived commit's ``commitInfo``
carries the ``tidelake`` derive annotation ``{"kind": "derive", "hours": [hour keys], "inputs":
{input path: version read}, ...}`` (:mod:`tidelake.layers.lineage`); versions are numbered by
:func:`tidelake.deltalog.commits_after`, never by raw ``history()``. An event that landed in bronze
commit ``vb`` of ``bronze/<table>`` (the commit that added its file, as above), in hour ``h`` (its
file's ``event_date``/``event_hour`` partition):

* is **visible in silver** at the first commit of ``silver/<table>`` with
  ``inputs["bronze/<table>"] >= vb`` whose ``hours`` include ``h``; let ``vs`` be its version;
* is **visible in gold** at the first commit of ``gold/events_per_minute`` with
  ``inputs["silver/<table>"] >= vs`` whose ``hours`` include ``h``.

Gold latency = that gold commit's ``commitInfo.timestamp`` - produce time (silver likewise),
p50/p95/p99 overall and steady (same ``--warmup`` rule). After the bronze drain the script waits
(``--drain-timeout``) until no silver table and not ``gold/events_per_minute`` has a stale hour
(``tidelake.layers.stale_*_hours``); events still not visible are counted (``invisible_in_gold``,
0 after a complete catch-up). Gold latency is split exactly into ``bronze`` (produce → bronze
commit), ``wait`` (→ the request of the refresh run that made the gold commit: the run whose
start/end bracket it), ``launch`` (→ ``RUN_START``), ``to_silver`` (→ the silver commit) and
``to_gold`` (→ the gold commit), each boundary clamped to the previous one. The
``refresh_derived`` runs (count, statuses, median duration, request → ``RUN_START``, per-step
median) are read from the model's ``DAGSTER_HOME``; so are the ``refresh_warehouse`` (dbt) runs
that ``warehouse_sensor`` requests once a minute: they do not feed gold, but their CPU is in
the daemon tree's figure.

Where the time goes: each event's latency is split exactly into ``wait`` (produce → the run
request, or the start of the worker's batch; 0 if that came first), ``launch`` (request →
``RUN_START``: queue, a new run-worker process, loading the code location; 0 for the worker),
``before step`` (``RUN_START`` → the topic's ``STEP_START``: resources, and in a tick run the
topics before it) and ``in step`` (→ the Delta commit: consume, decode, commits).

CPU cost: the mean number of cores the pipeline used while the traffic flowed (steady window).
The pipeline is the daemon and every process it starts (code server, run workers), plus the
worker. Method (:class:`CpuMeter`): every second, read ``/proc/<pid>/stat`` of the processes of
their sessions (each is started in a new session; Dagster's children do not leave it) and of
their descendants; the tree's CPU time is the sum over live (and zombie) members of their own
``utime + stime`` plus ``cutime + cstime`` (what they have reaped: a run worker's whole life is
in its parent's once it exits), plus the last reading of any member that vanished while its
parent was gone too (an orphan reaped by init). The benchmark's own process, the producer and
the broker are not in it. The machine's busy cores (``/proc/stat``, everything: the broker, the
producer, other users) and the 1-minute load average are printed beside it.

Mix: ``--mix clean`` (default) sends on-time valid events at a steady rate (no late, duplicate or
malformed messages, no bursts) so the figure is reproducible; ``--mix default`` uses the
simulator's defaults (10 % late, 2 % duplicates, 1 % malformed, bursts of 3-8x the rate).

Usage::

    .venv/bin/python benchmarks/freshness.py                    # 3 models x 3 min at 2k events/s
    .venv/bin/python benchmarks/freshness.py --models tick --minutes 1 --json

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
from tidelake.deltalog import commits_after
from tidelake.kafka_admin import ensure_topics
from tidelake.lake import Lake
from tidelake.layers import EVENTS_PER_MINUTE_PATH, stale_gold_hours, stale_silver_hours
from tidelake.layers.hours import key_of_partition
from tidelake.layers.lineage import derive_note
from tidelake.layers.top_products import TOP_PRODUCTS_PATH
from tidelake.settings import INGEST_MODELS, KafkaSettings, LakeSettings, Settings
from tidelake.simulator import SimulatorConfig, generate_messages, producer_config, run_simulation

REPO = Path(__file__).resolve().parents[1]
_AMBIENT_ENV = re.compile(r"^(AWS_|KAFKA_|TIDELAKE_)|^(LAKE_URI|DAGSTER_HOME)$")
GOAL_P95_SECONDS = 5.0
GOLD_GOAL_P95_SECONDS = 15.0
REFRESH_JOB_NAME = "refresh_derived"
WAREHOUSE_JOB_NAME = "refresh_warehouse"
"""``pipeline_defs.refresh``'s job names, repeated so the script need not import the code
location; the smoke test finds no refresh runs if they drift apart."""
ALL_TOPICS_TAG_VALUE = "*all*"
"""``sensors.ALL_TOPICS_TAG_VALUE``, repeated so the script imports Dagster only where it reads an
instance; the model-loop smoke test finds no tick runs if the two drift apart."""
PARTS = ("wait", "launch", "before_step", "in_step")
"""The split of an event's latency (see the module docstring); the parts sum to the latency."""
MODELS = ("runs", "tick", "worker")
"""The order the models run in by default: today's first, the proposed default last."""
IN_FLIGHT = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}
"""Run statuses of a run that has not ended."""
READY_MARK = b"Checking for new runs for sensor"
"""The daemon's log line once the sensor daemon evaluates sensors: the stack is up."""


@dataclass(frozen=True)
class FreshConfig:
    minutes: float = 3.0
    rate: float = 2000.0
    mix: str = "clean"
    topics: tuple[str, ...] = tuple(TOPICS)
    partitions: int = 3
    warmup: float = 30.0
    drain_timeout: float = 180.0
    ready_timeout: float = 180.0
    """Longest wait for the daemon to evaluate sensors (and the worker to follow)."""
    seed: int = 0
    quiet_seconds: float | None = None
    """Sets ``TIDELAKE_QUIET_SECONDS`` for the runs; ``None`` keeps the engine default."""
    max_batch_seconds: float | None = None
    """Sets ``TIDELAKE_MAX_BATCH_SECONDS`` for the runs; ``None`` keeps the engine default."""
    models: tuple[str, ...] = MODELS
    cooldown: float = 20.0
    """Seconds of rest between models, so one model's tail does not load the next one's start."""
    worker_refresh: bool = True
    """``TIDELAKE_WORKER_REFRESH``: under ``worker``, the worker refreshes silver and gold."""
    worker_args: tuple[str, ...] = ()
    """Extra arguments of ``tidelake ingest --follow`` (e.g. ``--no-dagster``)."""
    bootstrap: str | None = None
    """An existing broker to use; ``None`` starts the embedded one (once for every model)."""
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


# -- CPU cost ----------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the meter reads, times in seconds."""

    pid: int
    ppid: int
    session: int
    started: int
    """Start time in clock ticks since boot: tells a reused pid from the process it replaces."""
    own: float
    """utime + stime."""
    reaped: float
    """cutime + cstime: the CPU time of the children it has waited for."""


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` parsed; None once the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = raw[raw.rindex(b")") + 2 :].split()
    ticks = [int(fields[i]) for i in (11, 12, 13, 14)]  # utime stime cutime cstime
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        session=int(fields[3]),
        started=int(fields[19]),
        own=(ticks[0] + ticks[1]) / CLOCK_TICKS,
        reaped=(ticks[2] + ticks[3]) / CLOCK_TICKS,
    )


def proc_snapshot() -> dict[int, ProcStat]:
    out: dict[int, ProcStat] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = read_stat(int(entry.name))
            if st is not None:
                out[st.pid] = st
    return out


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all users, all cores), from ``/proc/stat``."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    ticks = [int(x) for x in first[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    # guest/guest_nice (fields 9-10) are already counted in user/nice.
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


@dataclass(frozen=True)
class CpuSample:
    """One reading of :class:`CpuMeter`."""

    at: float
    cpu_seconds: dict[int, float]
    """Root pid → CPU seconds of its tree so far."""
    load_1min: float
    machine_busy_seconds: float


class CpuMeter:
    """CPU seconds used by process trees: each root (a session leader: started with
    ``start_new_session``), the processes of its session, and their descendants.

    Rule: at each :meth:`sample`, a tree's CPU time = Σ over its live members (zombies included)
    of ``own + reaped``, plus ``own + reaped`` at last sight of each member that vanished while
    its parent was not a live member (reaped by init as an orphan; its last second is lost). A
    member that vanished with its parent alive was reaped by that parent, whose ``reaped`` now
    holds its whole life, so a short-lived run worker is counted in full, even one born and gone
    between two samples.
    """

    def __init__(self, roots: Sequence[int], interval: float = 1.0) -> None:
        self.roots = list(roots)
        self.interval = interval
        self.samples: list[CpuSample] = []
        self._members: dict[tuple[int, int], tuple[int, ProcStat]] = {}
        self._orphaned = dict.fromkeys(self.roots, 0.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _tree(self, snap: dict[int, ProcStat]) -> dict[tuple[int, int], tuple[int, ProcStat]]:
        """The live members of every tree now: (pid, start time) → (root, stat)."""
        roots = set(self.roots)
        live = {
            (st.pid, st.started): (st.session if st.session in roots else st.pid, st)
            for st in snap.values()
            if st.session in roots or st.pid in roots
        }
        # Descendants that left the session (setsid) still count, through their parent.
        while True:
            root_of = {key[0]: root for key, (root, _) in live.items()}
            extra = {
                (st.pid, st.started): (root_of[st.ppid], st)
                for st in snap.values()
                if st.ppid in root_of and (st.pid, st.started) not in live
            }
            if not extra:
                return live
            live |= extra

    def sample(self) -> CpuSample:
        """Read the trees now; record and return their CPU seconds so far."""
        with self._lock:
            live = self._tree(proc_snapshot())
            live_pids = {key[0] for key in live}
            for key, (root, st) in self._members.items():
                if key not in live and st.ppid not in live_pids:
                    self._orphaned[root] += st.own + st.reaped
            self._members = live
            totals = dict(self._orphaned)
            for root, st in live.values():
                totals[root] += st.own + st.reaped
            sample = CpuSample(time.time(), totals, os.getloadavg()[0], machine_busy_seconds())
            self.samples.append(sample)
            return sample

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> CpuMeter:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def window(
        self, start: float, end: float, names: dict[int, str] | None = None
    ) -> dict[str, Any]:
        """Mean cores (CPU seconds / wall seconds) of all the trees (``cores``), of each root
        (``cores_by_root``, keyed by ``names``) and of the machine, between the samples nearest
        to ``start`` and ``end``, and the 1-minute load average meanwhile."""
        names = names or {r: str(r) for r in self.roots}
        inside = [s for s in self.samples if start - self.interval <= s.at <= end + self.interval]
        if len(inside) < 2:
            return {"seconds": 0.0, "cpu_seconds": None, "cores": None, "machine_cores": None}
        a = min(inside, key=lambda s: abs(s.at - start))
        b = min(inside, key=lambda s: abs(s.at - end))
        wall = b.at - a.at
        if wall <= 0:
            return {"seconds": 0.0, "cpu_seconds": None, "cores": None, "machine_cores": None}
        used = {r: b.cpu_seconds[r] - a.cpu_seconds[r] for r in self.roots}
        loads = [s.load_1min for s in inside]
        return {
            "seconds": wall,
            "cpu_seconds": sum(used.values()),
            "cores": sum(used.values()) / wall,
            "cores_by_root": {names.get(r, str(r)): v / wall for r, v in used.items()},
            "machine_cores": (b.machine_busy_seconds - a.machine_busy_seconds) / wall,
            "load_1min_mean": statistics.fmean(loads),
            "load_1min_max": max(loads),
        }


# -- the stack ---------------------------------------------------------------------------------


@contextlib.contextmanager
def child_process(
    argv: Sequence[str], env: dict[str, str], stdout: Path, stderr: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` in its own session (its children join it); SIGTERM to the group at the end."""
    with contextlib.ExitStack() as files:
        out = files.enter_context(stdout.open("wb"))
        err = files.enter_context(stderr.open("wb")) if stderr else None
        proc = subprocess.Popen(
            list(argv),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=err if err is not None else subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def dagster_daemon(env: dict[str, str], log_path: Path) -> Any:
    """``dagster-daemon run`` on the project workspace (code server and run workers join its
    session)."""
    binary = Path(sys.executable).with_name("dagster-daemon")
    return child_process([str(binary), "run", "-w", str(REPO / "workspace.yaml")], env, log_path)


def ingestion_worker(
    env: dict[str, str], out_path: Path, log_path: Path, extra: Sequence[str] = ()
) -> Any:
    """``tidelake ingest --follow --json``: one JSON line per committed batch on ``out_path``."""
    binary = Path(sys.executable).with_name("tidelake")
    argv = [str(binary), "ingest", "--follow", "--json", *extra]
    return child_process(argv, env, out_path, log_path)


def wait_for(
    what: str,
    ready: Callable[[], bool],
    procs: Sequence[tuple[str, subprocess.Popen[bytes]]],
    timeout: float,
) -> None:
    """Poll ``ready`` until it holds; fail early if one of ``procs`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while not ready():
        for name, proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f}s")
        time.sleep(0.5)


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


@dataclass(frozen=True)
class FileCommit:
    """The Delta commit that added one data file: its version, time (s) and hour partition."""

    version: int
    timestamp: float
    hour: str | None
    """The file's ``event_date``/``event_hour`` partition as an hour key (None: unpartitioned)."""


def file_commits(table_dir: Path) -> dict[str, FileCommit]:
    """From the Delta log: added file path → the commit that added it."""
    out: dict[str, FileCommit] = {}
    for log in sorted((table_dir / "_delta_log").glob("*.json")):
        ts: float | None = None
        adds: list[tuple[str, str | None]] = []
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                ts = action["commitInfo"].get("timestamp", 0) / 1000.0
            elif "add" in action:
                add = action["add"]
                hour = key_of_partition(add.get("partitionValues") or {})
                adds.append((urllib.parse.unquote(add["path"]), hour))
        if ts is None:  # no commitInfo: fall back to the log file's mtime
            ts = log.stat().st_mtime
        for path, hour in adds:
            out[path] = FileCommit(int(log.stem), ts, hour)
    return out


def event_latencies(table_dir: Path) -> dict[str, np.ndarray]:
    """Per bronze row: produce time, landing (commit) time and _ingested_at, in epoch seconds,
    and the version of the commit that landed it and its hour key (object array)."""
    produced, landed, ingested, versions, hours = [], [], [], [], []
    for rel, fc in file_commits(table_dir).items():
        t = pq.read_table(table_dir / rel, columns=["_kafka_timestamp", "_ingested_at"])
        k = t.column("_kafka_timestamp").cast("int64").to_numpy(zero_copy_only=False) / 1e6
        i = t.column("_ingested_at").cast("int64").to_numpy(zero_copy_only=False) / 1e6
        produced.append(k)
        ingested.append(i)
        landed.append(np.full(len(k), fc.timestamp))
        versions.append(np.full(len(k), fc.version, dtype=np.int64))
        hours.append(np.full(len(k), fc.hour, dtype=object))
    if not produced:
        empty = np.array([], dtype=float)
        return {
            "produced": empty,
            "landed": empty,
            "ingested": empty,
            "version": np.array([], dtype=np.int64),
            "hour": np.array([], dtype=object),
        }
    return {
        "produced": np.concatenate(produced),
        "landed": np.concatenate(landed),
        "ingested": np.concatenate(ingested),
        "version": np.concatenate(versions),
        "hour": np.concatenate(hours),
    }


# -- visibility in silver and gold -------------------------------------------------------------


@dataclass(frozen=True)
class DerivedCommit:
    """One refresh commit of a derived table, from its ``tidelake`` derive annotation."""

    version: int
    timestamp: float
    """``commitInfo.timestamp`` in epoch seconds: when the commit became visible to readers."""
    hours: frozenset[str]
    inputs: dict[str, int]


def derived_commits(lake: Lake, path: str) -> list[DerivedCommit]:
    """The derive commits of ``path``, oldest first (versions numbered by
    :func:`tidelake.deltalog.commits_after`, never by raw ``history()``)."""
    table = lake.open(path)
    if table is None:
        return []
    out = []
    for version, info in commits_after(table, -1):
        note = derive_note(info)
        if note is None:
            continue
        out.append(
            DerivedCommit(
                version=version,
                timestamp=float(info.get("timestamp", 0)) / 1000.0,
                hours=frozenset(note.get("hours") or ()),
                inputs={str(k): int(v) for k, v in (note.get("inputs") or {}).items()},
            )
        )
    return out


def first_visible(
    commits: Sequence[DerivedCommit], input_path: str, version: int, hour: str | None
) -> DerivedCommit | None:
    """The first commit of a derived table that read ``input_path`` at ``version`` or later and
    (re)wrote ``hour``: the rows of that input commit in that hour are visible from it on."""
    for c in commits:
        if c.inputs.get(input_path, -1) >= version and hour in c.hours:
            return c
    return None


def derived_visibility(
    versions: np.ndarray,
    hours: np.ndarray,
    bronze_path: str,
    silver_path: str,
    silver: Sequence[DerivedCommit],
    gold: Sequence[DerivedCommit],
    rankings: Sequence[DerivedCommit] = (),
) -> dict[str, np.ndarray]:
    """Per event (its bronze commit version and hour): when it became visible in silver and in
    gold (epoch s; NaN: not yet), by the rule of the module docstring; with ``rankings`` (the
    ``gold/top_products_last_hour`` commits, for page views) also when it was first counted in
    a ranking: the first ranking that read the silver version that made it visible."""
    n = len(versions)
    silver_at = np.full(n, np.nan)
    gold_at = np.full(n, np.nan)
    ranked_at = np.full(n, np.nan)
    if not n:
        return {"silver": silver_at, "gold": gold_at, "ranked": ranked_at}
    hour_keys, hour_idx = np.unique(hours.astype(str), return_inverse=True)
    groups, group_idx = np.unique(versions * len(hour_keys) + hour_idx, return_inverse=True)
    for g, code in enumerate(groups):
        version, hour = int(code) // len(hour_keys), str(hour_keys[int(code) % len(hour_keys)])
        s = first_visible(silver, bronze_path, version, hour)
        if s is None:
            continue
        sel = group_idx == g
        silver_at[sel] = s.timestamp
        c = first_visible(gold, silver_path, s.version, hour)
        if c is not None:
            gold_at[sel] = c.timestamp
        r = next((r for r in rankings if r.inputs.get(silver_path, -1) >= s.version), None)
        if r is not None:
            ranked_at[sel] = r.timestamp
    return {"silver": silver_at, "gold": gold_at, "ranked": ranked_at}


@dataclass
class RefreshRun:
    """One ``refresh_derived`` run: request, start, end, and each step's (start, end)."""

    run_id: str
    status: str
    requested: float
    started: float | None
    ended: float | None
    steps: dict[str, tuple[float, float]] = field(default_factory=dict)


def refresh_runs(instance: Any, job_name: str = REFRESH_JOB_NAME) -> list[RefreshRun]:
    """Every run of ``job_name`` in the instance, oldest first, with its steps' times."""
    import dagster as dg

    out = []
    for record in instance.get_run_records(filters=dg.RunsFilter(job_name=job_name)):
        run = record.dagster_run
        starts: dict[str, float] = {}
        steps: dict[str, tuple[float, float]] = {}
        for e in instance.all_logs(run.run_id):
            de = e.dagster_event
            if de is None or not de.step_key:
                continue
            if de.event_type_value == "STEP_START":
                starts[de.step_key] = e.timestamp
            elif de.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                steps[de.step_key] = (starts.get(de.step_key, e.timestamp), e.timestamp)
        out.append(
            RefreshRun(
                run_id=run.run_id,
                status=run.status.value,
                requested=record.create_timestamp.timestamp(),
                started=record.start_time,
                ended=record.end_time,
                steps=steps,
            )
        )
    return sorted(out, key=lambda r: r.requested)


PAGE_VIEWS_TOPIC = "shop.page_views"
"""The topic whose events the top-10 ranking counts."""

GOLD_PARTS = ("bronze", "wait", "launch", "to_silver", "to_gold")
"""The split of an event's gold latency: produce → bronze commit; → the refresh run's request
(the sensor's next tick, or the run in flight ending); → ``RUN_START`` (queue, a new run-worker
process, loading the code location); → the silver commit; → the gold commit."""


def attribute_gold(
    produced: np.ndarray,
    landed: np.ndarray,
    silver_at: np.ndarray,
    gold_at: np.ndarray,
    runs: Sequence[RefreshRun],
) -> dict[str, np.ndarray]:
    """Split each visible event's gold latency into :data:`GOLD_PARTS` (they sum to it).

    The run that made an event visible is the one whose start precedes the gold commit and whose
    end follows it. Each boundary is clamped to the previous one (an event that landed after its
    run was requested waited 0 for the request). A gold commit no run brackets was the ingestion
    worker's refresh: ``wait`` and ``launch`` are 0 and ``to_silver`` holds the worker's
    coalescing wait (``by_worker`` marks those events).
    """
    runs = [r for r in runs if r.started is not None and r.ended is not None]
    starts = np.array([r.started for r in runs])
    ends = np.array([r.ended for r in runs])
    requests = np.array([r.requested for r in runs])
    parts = {k: np.zeros(len(gold_at)) for k in GOLD_PARTS}
    matched = np.zeros(len(gold_at), dtype=bool)
    for ts in np.unique(gold_at[~np.isnan(gold_at)]):
        hit = np.nonzero((starts <= ts + 1e-3) & (ends >= ts - 1e-3))[0]
        if not len(hit):
            continue
        i = hit[0]
        sel = gold_at == ts
        t1 = np.minimum(landed[sel], ts)
        t2 = np.minimum(np.maximum(t1, requests[i]), ts)
        t3 = np.minimum(np.maximum(t2, starts[i]), ts)
        t4 = np.minimum(np.maximum(t3, silver_at[sel]), ts)
        parts["bronze"][sel] = t1 - produced[sel]
        parts["wait"][sel] = t2 - t1
        parts["launch"][sel] = t3 - t2
        parts["to_silver"][sel] = t4 - t3
        parts["to_gold"][sel] = ts - t4
        matched[sel] = True
    # Made visible outside any run: the ingestion worker's own refresh (TIDELAKE_WORKER_REFRESH),
    # which has no request and no launch; the coalescing wait is inside ``to_silver``.
    worker = ~matched & ~np.isnan(gold_at)
    t1 = np.minimum(landed[worker], gold_at[worker])
    t4 = np.minimum(np.maximum(t1, silver_at[worker]), gold_at[worker])
    parts["bronze"][worker] = t1 - produced[worker]
    parts["to_silver"][worker] = t4 - t1
    parts["to_gold"][worker] = gold_at[worker] - t4
    matched |= worker
    return {**parts, "matched": matched, "by_worker": worker}


def derived_caught_up(lake: Lake, contracts: Sequence[TopicContract]) -> bool:
    """No stale hour left in any silver table of ``contracts`` nor in gold/events_per_minute
    (the refresh functions' own rule, from the Delta logs)."""
    if any(stale_silver_hours(lake, c).hours for c in contracts):
        return False
    return not stale_gold_hours(lake, list(TOPICS.values())).hours


def poll_caught_up(
    lake: Lake, contracts: Sequence[TopicContract], log: Callable[[str], None]
) -> bool:
    """:func:`derived_caught_up`, False when the logs cannot be read yet (a refresh creating a
    table as we read it): a polling loop retries, it must not end the benchmark."""
    try:
        return derived_caught_up(lake, contracts)
    except Exception as exc:  # any read error is transient here: the next poll retries
        log(f"reading staleness failed ({type(exc).__name__}: {exc}); retrying")
        return False


def refresh_summary(runs: Sequence[RefreshRun]) -> dict[str, Any]:
    """Count, statuses and median timings of refresh runs, and each step's median duration."""
    done = [r for r in runs if r.started is not None and r.ended is not None]
    durations = [r.ended - r.started for r in done]  # type: ignore[operator]
    launch = [r.started - r.requested for r in done]  # type: ignore[operator]
    to_first_step = [
        min(s for s, _ in r.steps.values()) - r.started  # type: ignore[operator]
        for r in done
        if r.steps
    ]
    gaps = [b.requested - a.requested for a, b in itertools.pairwise(runs)]
    step_names = sorted({k for r in done for k in r.steps})
    return {
        "count": len(runs),
        "by_status": _count(r.status for r in runs),
        "median_run_seconds": statistics.median(durations) if durations else None,
        "p95_run_seconds": float(np.percentile(durations, 95)) if durations else None,
        "median_request_to_run_start": statistics.median(launch) if launch else None,
        "median_run_start_to_first_step": (
            statistics.median(to_first_step) if to_first_step else None
        ),
        "median_request_gap": statistics.median(gaps) if gaps else None,
        "median_step_seconds": {
            k: statistics.median(e - s for r in done if k in r.steps for s, e in [r.steps[k]])
            for k in step_names
        },
    }


@dataclass
class RunTimeline:
    """One topic's share of one run (or of one worker batch): when it was asked for, started,
    reached the topic's step, and ended."""

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
    """Per (ingestion run, topic it covered): the timeline from the run's event log.

    A per-topic run covers one topic; a tick run covers each topic whose step it started.
    """
    import dagster as dg

    values = [c.name for c in contracts] + [ALL_TOPICS_TAG_VALUE]
    out: list[RunTimeline] = []
    for record in instance.get_run_records(filters=dg.RunsFilter(tags={INGEST_TOPIC_TAG: values})):
        out.extend(run_shares(instance, record, contracts))
    return sorted(out, key=lambda t: t.requested)


def run_shares(instance: Any, record: Any, contracts: Sequence[TopicContract]) -> list[RunTimeline]:
    """The timelines of one run's topics, from its event log."""
    by_step = {f"bronze__{c.table_name}": c.name for c in contracts}
    by_table = {c.table_name: c.name for c in contracts}
    run = record.dagster_run
    per_topic: dict[str, RunTimeline] = {}

    def share(topic: str) -> RunTimeline:
        if topic not in per_topic:
            per_topic[topic] = RunTimeline(
                run_id=run.run_id,
                topic=topic,
                status=run.status.value,
                requested=record.create_timestamp.timestamp(),
                started=record.start_time,
                ended=record.end_time,
            )
        return per_topic[topic]

    for e in instance.all_logs(run.run_id):
        de = e.dagster_event
        if de is None:
            continue
        kind = de.event_type_value
        topic = by_step.get(de.step_key or "")
        if kind == "STEP_START" and topic:
            share(topic).step_start = e.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and topic:
            share(topic).step_end = e.timestamp
        elif kind == "ASSET_MATERIALIZATION":
            mat = de.event_specific_data.materialization
            path = mat.asset_key.path
            if path[0] != "bronze" or path[-1] not in by_table:
                continue
            tl = share(by_table[path[-1]])
            tl.materialized = e.timestamp
            md = mat.metadata
            if "stage_seconds" in md:
                tl.stage_seconds = dict(md["stage_seconds"].value)
            if "records" in md:
                tl.records = int(md["records"].value)
    return list(per_topic.values())


def worker_timelines(lines: Sequence[str], contracts: Sequence[TopicContract]) -> list[RunTimeline]:
    """The worker's batches (``--json`` lines: one :class:`BatchReport` each) as timelines: the
    batch starts when it is "requested" and "launched", so ``wait`` is the wait for a batch."""
    names = {c.name for c in contracts}
    out: list[RunTimeline] = []
    for i, line in enumerate(lines):
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if not isinstance(report, dict) or report.get("topic") not in names:
            continue
        started, finished = report.get("started_at"), report.get("finished_at")
        if started is None or finished is None:
            continue
        out.append(
            RunTimeline(
                run_id=f"batch-{i}",
                topic=report["topic"],
                status="SUCCESS",
                requested=started,
                started=started,
                ended=finished,
                step_start=started,
                materialized=finished,
                step_end=finished,
                records=report.get("records"),
                stage_seconds=dict(report.get("stage_seconds") or {}),
            )
        )
    return sorted(out, key=lambda t: t.requested)


def attribute(
    produced: np.ndarray, landed: np.ndarray, runs: Sequence[RunTimeline]
) -> dict[str, np.ndarray]:
    """Split each event's latency into :data:`PARTS` (they sum to the latency).

    The run that carried an event is the one (of its topic) whose start precedes the commit and
    whose end follows it; events are matched by their commit time. Each boundary is clamped to
    the previous one: an event produced after its run was requested waited 0 for the request.
    """
    runs = [r for r in runs if r.started is not None and r.ended is not None]
    starts = np.array([r.started for r in runs])
    ends = np.array([r.ended for r in runs])
    requests = np.array([r.requested for r in runs])
    steps = np.array([r.step_start if r.step_start is not None else r.started for r in runs])
    parts = {k: np.zeros(len(landed)) for k in PARTS}
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
        t3 = np.minimum(np.maximum(t2, steps[i]), ts)
        parts["wait"][sel] = t1 - t0
        parts["launch"][sel] = t2 - t1
        parts["before_step"][sel] = t3 - t2
        parts["in_step"][sel] = ts - t3
        matched[sel] = True
    return {**parts, "matched": matched}


# -- one model -----------------------------------------------------------------------------------


def _log(msg: str) -> None:
    sys.stderr.write(f"[freshness] {msg}\n")
    sys.stderr.flush()


def _count(items: Iterator[str] | Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def run_counts(instance: Any, contracts: Sequence[TopicContract]) -> dict[str, int]:
    """``status → count`` of the model's ingestion runs (per-topic and all-topics tags)."""
    import dagster as dg

    values = [c.name for c in contracts] + [ALL_TOPICS_TAG_VALUE]
    runs = instance.get_runs(filters=dg.RunsFilter(tags={INGEST_TOPIC_TAG: values}))
    return _count(r.status.value for r in runs)


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def run_model(
    cfg: FreshConfig, model: str, bootstrap: str, work: Path, log: Callable[[str], None] = _log
) -> dict[str, Any]:
    """One model on a fresh stack (topics, lake, ``DAGSTER_HOME``): traffic, drain, measure."""
    import dagster as dg

    contracts = [TOPICS[t] for t in cfg.topics]
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    work.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    prefix = f"fresh{model}{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=cfg.partitions
    )
    ensure_topics(kafka, contracts, partitions=cfg.partitions)
    lake_settings = LakeSettings(uri=str(work / "lake"))
    lake = Lake.from_settings(lake_settings)
    home = ensure_dagster_home(work / "dagster_home")
    env = {k: v for k, v in os.environ.items() if not _AMBIENT_ENV.match(k)}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LAKE_URI": str(work / "lake"),
        "TIDELAKE_TOPIC_PREFIX": prefix,
        "TIDELAKE_TOPIC_PARTITIONS": str(cfg.partitions),
        "TIDELAKE_ENV": "local",
        "TIDELAKE_INGEST_MODEL": model,
        "DAGSTER_HOME": str(home),
        # warehouse_sensor's dbt runs would otherwise build the repo's shared DuckDB file.
        "TIDELAKE_WAREHOUSE_PATH": str(work / "warehouse.duckdb"),
        "TIDELAKE_WORKER_REFRESH": "true" if cfg.worker_refresh else "false",
    }
    if cfg.quiet_seconds is not None:
        env["TIDELAKE_QUIET_SECONDS"] = str(cfg.quiet_seconds)
    if cfg.max_batch_seconds is not None:
        env["TIDELAKE_MAX_BATCH_SECONDS"] = str(cfg.max_batch_seconds)
    daemon_log = work / "logs" / "daemon.log"
    worker_out, worker_log = work / "logs" / "worker.jsonl", work / "logs" / "worker.log"
    with contextlib.ExitStack() as stack:
        # Opening the instance creates its SQLite storages: the daemon and the worker, started
        # together on an empty home, race to migrate them (alembic: "more than one head").
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        daemon = stack.enter_context(dagster_daemon(env, daemon_log))
        procs = [("dagster-daemon", daemon)]
        worker: subprocess.Popen[bytes] | None = None
        if model == "worker":
            worker = stack.enter_context(
                ingestion_worker(env, worker_out, worker_log, cfg.worker_args)
            )
            procs.append(("the ingestion worker", worker))
        log(
            f"{model}: daemon pid {daemon.pid}"
            + (f", worker pid {worker.pid}" if worker else "")
            + f", DAGSTER_HOME={home}, lake={work / 'lake'}, topics {prefix}*"
        )
        meter = CpuMeter([p.pid for _, p in procs]).start()
        roles = {daemon.pid: "daemon"} | ({worker.pid: "worker"} if worker else {})
        wait_for(
            "a sensor evaluation",
            lambda: READY_MARK in daemon_log.read_bytes(),
            procs,
            cfg.ready_timeout,
        )
        if worker is not None:
            wait_for(
                "the worker following",
                lambda: b"ingestion worker: following" in worker_log.read_bytes(),
                procs,
                cfg.ready_timeout,
            )

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
        thread = threading.Thread(target=simulate, name="producer", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(10.0)
            rows = landed_rows(lake, contracts, prefix)
            so_far = meter.window(sim_started, time.time(), roles)
            runs = run_counts(instance, contracts)
            batches = len(_lines(worker_out))
            log(
                f"{model} {time.time() - sim_started:5.0f}s: landed {rows:,} rows; "
                + (f"batches {batches}" if worker else f"runs {runs or 'none yet'}")
                + f"; pipeline {_f(so_far['cores'], ' cores')}; load {os.getloadavg()[0]:.1f}"
            )
            for name, proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see {work / 'logs'}")
        sim = summary[0]
        if isinstance(sim, Exception):
            raise sim
        sim_ended = time.time()
        log(f"{model}: producer done: {sim.delivered:,} delivered, {sim.failed} failed; draining")
        deadline = time.monotonic() + cfg.drain_timeout
        while True:
            landed = landed_rows(lake, contracts, prefix)
            if landed >= sim.delivered or time.monotonic() > deadline:
                break
            time.sleep(2.0)
        drained = landed >= sim.delivered
        drained_at = time.time()
        meter.stop()
        state = "drained" if drained else "NOT drained"
        log(f"{model}: landed {landed:,}/{sim.delivered:,} ({state})")
        if worker is None:
            # The last rows land before their run ends (its checks come after the commit); a run
            # killed with the daemon has no end time, and its events could not be attributed.
            wait_for(
                "the ingestion runs to finish",
                lambda: not set(run_counts(instance, contracts)) & IN_FLIGHT,
                procs,
                cfg.drain_timeout,
            )
        if worker is not None:
            worker.send_signal(signal.SIGTERM)  # finishes the batches in progress, exits 0
            worker.wait(timeout=60)
        # Bronze is final now; gold catches up through the daemon's refresh sensor.
        deadline = time.monotonic() + cfg.drain_timeout
        while not (caught_up := poll_caught_up(lake, contracts, log)):
            if time.monotonic() > deadline:
                break
            time.sleep(2.0)
        caught_up_at = time.time()
        log(
            f"{model}: silver and gold {'caught up' if caught_up else 'NOT caught up'} "
            f"{caught_up_at - sim_ended:.0f}s after the producer stopped"
        )
        with contextlib.suppress(TimeoutError):
            # A run in flight would have no end time; one requested now finds nothing stale.
            wait_for(
                "the refresh runs to finish",
                lambda: not {r.status for r in refresh_runs(instance)} & IN_FLIGHT,
                # Only the daemon: the worker has been stopped on purpose by now.
                [(name, proc) for name, proc in procs if proc is not worker],
                60.0,
            )
        refreshes = refresh_runs(instance)
        warehouse_runs = refresh_runs(instance, WAREHOUSE_JOB_NAME)
        timelines = (
            worker_timelines(_lines(worker_out), contracts)
            if worker is not None
            else run_timelines(instance, contracts)
        )
        worker_rc = worker.returncode if worker is not None else None
        run_ids = {t.run_id for t in timelines}
        statuses = (
            {"SUCCESS": len(run_ids)} if worker is not None else run_counts(instance, contracts)
        )
        instance.dispose()

    produced_l, landed_l, ingested_l, parts = [], [], [], {}
    silver_l, gold_l, ranked_l = [], [], []
    gold_commits = derived_commits(lake, EVENTS_PER_MINUTE_PATH)
    rankings = derived_commits(lake, TOP_PRODUCTS_PATH)
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
        seen = derived_visibility(
            d["version"],
            d["hour"],
            c.bronze_path,
            c.silver_path,
            derived_commits(lake, c.silver_path),
            gold_commits,
            rankings if c.name == PAGE_VIEWS_TOPIC else (),
        )
        silver_l.append(seen["silver"])
        gold_l.append(seen["gold"])
        # Page views only (NaN elsewhere): when the top-10 ranking first counted the event.
        ranked_l.append(
            seen["ranked"] if c.name == PAGE_VIEWS_TOPIC else np.full(len(d["version"]), np.nan)
        )
    if not produced_l:
        raise RuntimeError(f"{model}: nothing landed in bronze; see {work / 'logs'}")
    produced = np.concatenate(produced_l)
    landed_at = np.concatenate(landed_l)
    ingested = np.concatenate(ingested_l)
    split = {k: np.concatenate([p[k] for p in parts.values()]) for k in (*PARTS, "matched")}
    latency = landed_at - produced
    steady = produced >= sim_started + cfg.warmup
    silver_at = np.concatenate(silver_l)
    gold_at = np.concatenate(gold_l)
    ranked_at = np.concatenate(ranked_l)
    gold_split = attribute_gold(produced, landed_at, silver_at, gold_at, refreshes)

    def derived_stats(mask: np.ndarray) -> dict[str, Any]:
        seen = mask & ~np.isnan(gold_at)
        m = seen & gold_split["matched"]
        return {
            "gold_latency": _pcts((gold_at - produced)[seen]),
            "silver_latency": _pcts((silver_at - produced)[mask & ~np.isnan(silver_at)]),
            "invisible_in_gold": int((mask & np.isnan(gold_at)).sum()),
            "invisible_in_silver": int((mask & np.isnan(silver_at)).sum()),
            "top10_latency": _pcts((ranked_at - produced)[mask & ~np.isnan(ranked_at)]),
            "split_matched": int(m.sum()),
            "refreshed_by_worker": int((seen & gold_split["by_worker"]).sum()),
            "split_mean": {
                k: float(gold_split[k][m].mean()) if m.any() else None for k in GOLD_PARTS
            },
            "split_p95_of_part": {
                k: float(np.percentile(gold_split[k][m], 95)) if m.any() else None
                for k in GOLD_PARTS
            },
        }

    def stats(mask: np.ndarray) -> dict[str, Any]:
        m = mask & split["matched"]
        return {
            "latency": _pcts(latency[mask]),
            "latency_ingested_at": _pcts((ingested - produced)[mask]),
            "split_matched": int(m.sum()),
            "split_mean": {k: float(split[k][m].mean()) if m.any() else None for k in PARTS},
            "split_p95_of_part": {
                k: float(np.percentile(split[k][m], 95)) if m.any() else None for k in PARTS
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
    per_run: dict[str, list[RunTimeline]] = {}
    for r in timelines:
        per_run.setdefault(r.run_id, []).append(r)
    run_seconds = [
        rs[0].ended - rs[0].started for rs in per_run.values() if rs[0].ended and rs[0].started
    ]
    return {
        "model": model,
        "started_at": started_at,
        "simulator": {
            "delivered": sim.delivered,
            "failed": sim.failed,
            "by_topic": getattr(sim, "by_topic", None),
            "by_kind": getattr(sim, "by_kind", None),
            "seconds": sim_ended - sim_started,
        },
        "landed_rows": landed,
        "drained": drained,
        "drain_seconds": drained_at - sim_ended,
        "worker_exit_code": worker_rc,
        "all": stats(np.ones(len(latency), dtype=bool)),
        "steady": stats(steady),
        "cpu": {
            "method": "CpuMeter: daemon + worker process trees, /proc every 1 s",
            "steady": meter.window(sim_started + cfg.warmup, sim_ended, roles),
            "traffic": meter.window(sim_started, sim_ended, roles),
        },
        "runs": {
            "kind": "worker batches" if worker_rc is not None else "Dagster runs",
            # Dagster runs: every run the model launched, even one with no step yet.
            "count": sum(statuses.values()) if worker_rc is None else len(per_run),
            "by_status": statuses,
            "topics_per_run_mean": (
                statistics.fmean(len(v) for v in per_run.values()) if per_run else None
            ),
            "median_run_seconds": statistics.median(run_seconds) if run_seconds else None,
            "median_request_to_run_start": med(lambda r: r.started - r.requested),  # type: ignore[operator]
            "median_run_start_to_step_start": med(
                lambda r: (r.step_start - r.started) if r.step_start else None  # type: ignore[operator]
            ),
            "median_step_start_to_materialization": med(
                lambda r: (r.materialized - r.step_start) if r.step_start else None  # type: ignore[operator]
            ),
            "median_records_per_topic_share": med(lambda r: r.records),
            "median_stage_seconds": {
                s: med(lambda r, s=s: r.stage_seconds.get(s))  # type: ignore[misc]
                for s in stage_names
            },
            "median_request_gap_per_topic": statistics.median(gaps) if gaps else None,
        },
        "derived": {
            "visibility": (
                "gold commit (first gold/events_per_minute derive commit with "
                "inputs[silver] >= the first silver commit with inputs[bronze] >= the row's "
                "bronze commit, both naming the row's hour) timestamp - Kafka message timestamp"
            ),
            "caught_up": caught_up,
            "catch_up_seconds": caught_up_at - sim_ended,
            "gold_commits": len(gold_commits),
            "all": derived_stats(np.ones(len(latency), dtype=bool)),
            "steady": derived_stats(steady),
            "refresh_runs": refresh_summary(refreshes),
            "warehouse_runs": refresh_summary(warehouse_runs),
        },
        "work_dir": str(work),
    }


def run_freshness(cfg: FreshConfig, log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Every model of ``cfg.models`` in turn, each on a fresh stack, one broker for all."""
    unknown = [m for m in cfg.models if m not in INGEST_MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; use {', '.join(INGEST_MODELS)}")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if cfg.work_dir:
            work = cfg.work_dir
            work.mkdir(parents=True, exist_ok=True)
        elif cfg.keep:
            work = Path(tempfile.mkdtemp(prefix="tl-fresh-"))
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tl-fresh-")))
        bootstrap = cfg.bootstrap
        if bootstrap is None:
            (work / "logs").mkdir(exist_ok=True)
            bootstrap = stack.enter_context(EmbeddedBroker(log_dir=work / "logs")).bootstrap_servers
        for n, model in enumerate(cfg.models):
            if n:
                time.sleep(cfg.cooldown)
            log(f"== {model}: load {os.getloadavg()[0]:.1f} before it starts")
            results[model] = run_model(cfg, model, bootstrap, work / model, log)
    return {
        "started_at": started_at,
        "machine": {"cpus": os.cpu_count(), "load_1min_at_end": os.getloadavg()[0]},
        "config": {**asdict(cfg), "work_dir": str(work)},
        "models": results,
    }


# -- the report --------------------------------------------------------------------------------


def _f(v: float | None, unit: str = "s") -> str:
    return "-" if v is None else f"{v:.2f}{unit}"


def format_report(res: dict[str, Any]) -> str:
    """The models side by side: latency, its split, runs, CPU cost, load."""
    cfg = res["config"]
    models: dict[str, Any] = res["models"]
    names = list(models)
    w = 22
    lines = [
        f"Tidelake freshness through Dagster — {res['started_at']}, {res['machine']['cpus']} cores",
        f"{cfg['rate']:g} events/s for {cfg['minutes']:g} min per model over {len(cfg['topics'])} "
        f"topics ({cfg['partitions']} partitions each), mix={cfg['mix']} ({cfg['producer']} "
        f"producer); steady = produced after {cfg['warmup']:g}s",
        "latency = Delta commit time of the row's file - Kafka message timestamp",
        "",
        f"{'':<34}" + "".join(f"{n:>{w}}" for n in names),
    ]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"{label:<34}" + "".join(f"{cell(models[n]):>{w}}" for n in names))

    def pct(scope: str, key: str = "latency") -> Callable[[dict[str, Any]], str]:
        def cell(m: dict[str, Any]) -> str:
            s = m[scope][key]
            if not s.get("count"):
                return "-"
            return f"{s['p50']:.2f}/{s['p95']:.2f}/{s['p99']:.2f}"

        return cell

    def load(m: dict[str, Any]) -> str:
        c = m["cpu"]["steady"]
        return f"load {c.get('load_1min_mean', 0):.1f} (max {c.get('load_1min_max', 0):.1f})"

    row("delivered / landed", lambda m: f"{m['simulator']['delivered']:,}/{m['landed_rows']:,}")
    row("drained", lambda m: f"yes, {m['drain_seconds']:.0f}s" if m["drained"] else "NO")
    row("1-min load during steady traffic", load)
    row("steady p50/p95/p99 (commit)", pct("steady"))
    row("steady p50/p95/p99 (_ingested_at)", pct("steady", "latency_ingested_at"))
    row("all p50/p95/p99 (commit)", pct("all"))
    row("steady max", lambda m: _f(m["steady"]["latency"].get("max")))
    row("steady events", lambda m: f"{m['steady']['latency'].get('count', 0):,}")
    row(
        f"steady p95 vs goal {GOAL_P95_SECONDS:g}s",
        lambda m: (
            "-"
            if m["steady"]["latency"].get("p95") is None
            else ("meets" if m["steady"]["latency"]["p95"] <= GOAL_P95_SECONDS else "MISSES")
        ),
    )
    lines += ["", "where the latency goes (steady, mean seconds; the parts sum to it):"]
    labels = {
        "wait": "  wait for run request / batch",
        "launch": "  request → RUN_START",
        "before_step": "  RUN_START → the topic's step",
        "in_step": "  step / batch → Delta commit",
    }

    def part(k: str) -> Callable[[dict[str, Any]], str]:
        return lambda m: _f(m["steady"]["split_mean"][k])

    for k, label in labels.items():
        row(label, part(k))
    lines += ["", "runs (or worker batches):"]
    row("  launched", lambda m: f"{m['runs']['count']} {m['runs']['kind'].split()[-1]}")
    row(
        "  by status", lambda m: ",".join(f"{k[:4]}:{v}" for k, v in m["runs"]["by_status"].items())
    )
    row("  topics per run", lambda m: _f(m["runs"]["topics_per_run_mean"], ""))
    row("  median run/batch duration", lambda m: _f(m["runs"]["median_run_seconds"]))
    row("  median request → RUN_START", lambda m: _f(m["runs"]["median_request_to_run_start"]))
    row("  median gap between a topic's", lambda m: _f(m["runs"]["median_request_gap_per_topic"]))
    row(
        "  median records per topic share",
        lambda m: f"{m['runs']['median_records_per_topic_share'] or 0:,.0f}",
    )
    lines += ["", "gold/events_per_minute (visible = the gold commit; see the docstring):"]

    def dpct(scope: str, key: str) -> Callable[[dict[str, Any]], str]:
        def cell(m: dict[str, Any]) -> str:
            s = m["derived"][scope][key]
            if not s.get("count"):
                return "-"
            return f"{s['p50']:.2f}/{s['p95']:.2f}/{s['p99']:.2f}"

        return cell

    def gold_goal(m: dict[str, Any]) -> str:
        p95 = m["derived"]["steady"]["gold_latency"].get("p95")
        return "-" if p95 is None else ("meets" if p95 <= GOLD_GOAL_P95_SECONDS else "MISSES")

    row(
        "caught up after the producer",
        lambda m: (
            f"yes, {m['derived']['catch_up_seconds']:.0f}s" if m["derived"]["caught_up"] else "NO"
        ),
    )
    row("steady p50/p95/p99 (gold)", dpct("steady", "gold_latency"))
    row("steady p50/p95/p99 (silver)", dpct("steady", "silver_latency"))
    row("steady p50/p95/p99 (top-10 ranking)", dpct("steady", "top10_latency"))
    row("all p50/p95/p99 (gold)", dpct("all", "gold_latency"))
    row("steady max (gold)", lambda m: _f(m["derived"]["steady"]["gold_latency"].get("max")))
    row(
        "events never visible in gold",
        lambda m: f"{m['derived']['all']['invisible_in_gold']:,}",
    )
    row(f"steady gold p95 vs goal {GOLD_GOAL_P95_SECONDS:g}s", gold_goal)
    gold_labels = {
        "bronze": "  produce → bronze commit",
        "wait": "  → refresh run request",
        "launch": "  → RUN_START",
        "to_silver": "  → silver commit",
        "to_gold": "  → gold commit",
    }
    lines.append("  where it goes (steady, mean s):")
    for k, label in gold_labels.items():
        row(label, lambda m, k=k: _f(m["derived"]["steady"]["split_mean"][k]))  # type: ignore[misc]

    def rr(key: str, unit: str = "s") -> Callable[[dict[str, Any]], str]:
        return lambda m: _f(m["derived"]["refresh_runs"][key], unit)

    row("  refresh_derived runs", lambda m: f"{m['derived']['refresh_runs']['count']}")
    row(
        "  median / p95 run duration",
        lambda m: f"{rr('median_run_seconds')(m)}/{rr('p95_run_seconds')(m)}",
    )
    row("  median request → RUN_START", rr("median_request_to_run_start"))
    row("  median RUN_START → first step", rr("median_run_start_to_first_step"))
    row("  median gap between requests", rr("median_request_gap"))
    row(
        "  refresh_warehouse (dbt) runs",
        lambda m: (
            f"{m['derived']['warehouse_runs']['count']}, median "
            f"{_f(m['derived']['warehouse_runs']['median_run_seconds'])}"
        ),
    )
    lines += ["", "CPU cost (steady traffic; mean cores = CPU seconds / wall seconds):"]

    def cores(key: str) -> Callable[[dict[str, Any]], str]:
        def cell(m: dict[str, Any]) -> str:
            c = m["cpu"]["steady"]
            return f"{_f(c.get(key), '')} @ load {c.get('load_1min_mean', 0):.1f}"

        return cell

    row("  pipeline (daemon tree + worker)", cores("cores"))

    def role(name: str) -> Callable[[dict[str, Any]], str]:
        return lambda m: _f(m["cpu"]["steady"].get("cores_by_root", {}).get(name), "")

    row("    of which the daemon tree", role("daemon"))
    row("    of which the worker", role("worker"))
    row("  whole machine busy", cores("machine_cores"))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> tuple[FreshConfig, bool]:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated ingestion models, run in turn (default {','.join(MODELS)})",
    )
    p.add_argument("--cooldown", type=float, default=20.0, help="seconds of rest between models")
    p.add_argument(
        "--worker-args",
        default="",
        help="extra arguments of `tidelake ingest --follow`, space-separated (e.g. --no-dagster)",
    )
    p.add_argument(
        "--no-worker-refresh",
        action="store_true",
        help="worker model: leave silver/gold to the sensor's refresh runs",
    )
    p.add_argument("--minutes", type=float, default=3.0, help="minutes of traffic per model")
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
    p.add_argument("--work-dir", type=Path, help="keep the stacks' files here (one dir per model)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    a = p.parse_args(argv)
    topics = tuple(t.strip() for t in a.topics.split(",")) if a.topics else tuple(TOPICS)
    models = tuple(m.strip().lower() for m in a.models.split(",") if m.strip())
    bad = [m for m in models if m not in INGEST_MODELS]
    if bad or not models:
        p.error(f"--models: use some of {','.join(INGEST_MODELS)}, not {a.models!r}")
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
        models=models,
        cooldown=a.cooldown,
        worker_args=tuple(a.worker_args.split()),
        worker_refresh=not a.no_worker_refresh,
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
