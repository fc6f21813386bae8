"""Ingest throughput: the engine's rate to committed Delta vs. a raw Kafka consume of the same data.

What it does, per producer compression (``none`` and ``lz4`` by default):

1. Generates ``--events`` valid messages of one topic with the simulator's bulk preset
   (``SimulatorConfig.bulk``; ``shop.page_views`` gives ~295-byte values) — once, shared by all
   compressions — and produces them to a fresh ``--partitions``-partition topic of the embedded
   broker (Tansu, memory storage), then flushes: every message is acknowledged before any timing.
2. **raw**: a ``confluent_kafka.Consumer`` with ``assign()`` (the engine's own consumer settings)
   reads every partition from the beginning until it has counted all N messages, touching
   ``value()`` and nothing else. The watermark is not used (Tansu under-reports it).
3. **engine**: ``IngestEngine.ingest_topic`` on the same topic into a fresh local Delta lake.
   ``wall`` is the wall time of that call. ``excl. quiet`` subtracts the final quiet wait (the time
   the consume loop idled after the last record until ``quiet_seconds`` passed) where no chunk was
   being written meanwhile. The report's ``stage_seconds`` are printed too (``consume`` includes
   the quiet wait; decode and writes run in a background thread, so stages overlap and do not sum
   to the wall time).
4. ratio = engine rate / raw rate, measured in the same process and run, so machine noise
   cancels out as far as possible. Results are ratios, not timed asserts.

Usage::

    .venv/bin/python benchmarks/ingest_throughput.py                 # 1M events, none + lz4
    .venv/bin/python benchmarks/ingest_throughput.py --events 100000 # quick mode
    .venv/bin/python benchmarks/ingest_throughput.py --repeat 3 --json

See docs/PERFORMANCE.md for the figures and how to read them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidelake.broker import EmbeddedBroker
from tidelake.contracts import TOPICS
from tidelake.ingest import IngestEngine, kafka_consumer_factory
from tidelake.kafka_admin import ensure_topics
from tidelake.lake import Lake
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings, Settings
from tidelake.simulator import SimulatorConfig, generate_messages, producer_config

DEFAULT_TOPIC = "shop.page_views"
OFFSET_BEGINNING = -2
RAW_STALL_SECONDS = 30.0


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark invocation."""

    events: int = 1_000_000
    partitions: int = 6
    compressions: tuple[str, ...] = ("none", "lz4")
    topic: str = DEFAULT_TOPIC
    commit_rows: int | None = None
    """Engine ``commit_rows``; ``None`` keeps the engine default."""
    quiet_seconds: float | None = None
    """Engine ``quiet_seconds``; ``None`` keeps the engine default."""
    repeat: int = 1
    seed: int = 0
    bootstrap: str | None = None
    """An already running broker; ``None`` starts an embedded one for the run."""
    work_dir: Path | None = None
    """Where the fresh lakes go (deleted after each run); ``None``: a temp dir."""
    bulk_baseline: bool = False
    """Also time the simple bulk path (join values → pyarrow.json → write_deltalake)."""
    generator: str = "fast"
    """``fast`` (simulator pool + fresh event ids) or ``sim`` (simulator for every message)."""


@dataclass
class EngineRun:
    seconds: float
    seconds_excl_quiet: float
    quiet_idle_seconds: float
    first_record_seconds: float
    """From the call to the first record consumed (tables, metadata, assign, first fetch)."""
    tail_seconds: float
    """From the last record consumed to the end of the last chunk's decode and commits."""
    records: int
    valid: int
    commits: int
    bronze_rows: int
    stage_seconds: dict[str, float]

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def rate_excl_quiet(self) -> float:
        return self.records / self.seconds_excl_quiet


@dataclass
class Trial:
    """One repeat of one compression: raw consume and engine on the same topic."""

    raw_seconds: float
    raw_rate: float
    engine: EngineRun
    bulk_seconds: float | None = None
    load_before: float = 0.0
    """1-minute load average before the trial (2 cores: > 2 means someone else is busy too)."""
    load_after: float = 0.0

    @property
    def ratio(self) -> float:
        return self.engine.rate / self.raw_rate

    @property
    def ratio_excl_quiet(self) -> float:
        return self.engine.rate_excl_quiet / self.raw_rate

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["engine"]["rate"] = self.engine.rate
        d["engine"]["rate_excl_quiet"] = self.engine.rate_excl_quiet
        d["ratio"] = self.ratio
        d["ratio_excl_quiet"] = self.ratio_excl_quiet
        if self.bulk_seconds:
            d["bulk_rate"] = self.engine.records / self.bulk_seconds
            d["bulk_ratio"] = d["bulk_rate"] / self.raw_rate
        return d


@dataclass
class CompressionResult:
    compression: str
    physical_topic: str
    produce_seconds: float
    trials: list[Trial] = field(default_factory=list)

    def median(self, fn: Callable[[Trial], float]) -> float:
        return statistics.median(fn(t) for t in self.trials)


@dataclass
class BenchResult:
    config: BenchConfig
    events: int
    mean_value_bytes: float
    mean_key_bytes: float
    generate_seconds: float
    engine_settings: dict[str, Any]
    results: list[CompressionResult]
    machine: dict[str, Any]
    started_at: str

    def to_dict(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["work_dir"] = str(self.config.work_dir) if self.config.work_dir else None
        return {
            "started_at": self.started_at,
            "machine": self.machine,
            "config": cfg,
            "events": self.events,
            "mean_value_bytes": self.mean_value_bytes,
            "mean_key_bytes": self.mean_key_bytes,
            "generate_seconds": self.generate_seconds,
            "engine_settings": self.engine_settings,
            "results": [
                {
                    "compression": r.compression,
                    "physical_topic": r.physical_topic,
                    "produce_seconds": r.produce_seconds,
                    "median": {
                        "raw_rate": r.median(lambda t: t.raw_rate),
                        "engine_rate": r.median(lambda t: t.engine.rate),
                        "engine_rate_excl_quiet": r.median(lambda t: t.engine.rate_excl_quiet),
                        "ratio": r.median(lambda t: t.ratio),
                        "ratio_excl_quiet": r.median(lambda t: t.ratio_excl_quiet),
                    },
                    "trials": [t.to_dict() for t in r.trials],
                }
                for r in self.results
            ],
        }


# -- data --------------------------------------------------------------------------------------


_ID_PREFIX = b'{"event_id":"'
_ID_LEN = 36
TEMPLATE_POOL = 20_000


def generate(
    topic: str, n: int, seed: int, generator: str = "fast"
) -> list[tuple[bytes | None, bytes]]:
    """``n`` valid on-time messages of ``topic`` from the simulator's bulk preset.

    ``sim`` runs the simulator for every message (~20-50k msg/s here: about a minute for 1M).
    ``fast`` runs it for a pool of :data:`TEMPLATE_POOL` messages and fills the rest with copies
    of the pool, each with a fresh seeded UUID4 ``event_id`` (same bytes, same size, unique ids).
    """
    if generator not in ("sim", "fast"):
        raise ValueError(f"generator must be sim or fast, not {generator!r}")
    pool_n = n if generator == "sim" else min(n, TEMPLATE_POOL)
    cfg = SimulatorConfig.bulk(pool_n, seed=seed, topics=(topic,), write_ledger=False)
    pool = [(m.key, m.value) for m in generate_messages(cfg)]
    if len(pool) >= n:
        return pool[:n]
    if not all(v.startswith(_ID_PREFIX) for _, v in pool):
        raise RuntimeError("fast generator: values do not start with event_id; use --generator sim")
    rng = random.Random(seed + 1)
    start, end = len(_ID_PREFIX), len(_ID_PREFIX) + _ID_LEN
    out = list(pool)
    for i in range(n - len(pool)):
        key, value = pool[i % len(pool)]
        new_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
        out.append((key, value[:start] + new_id + value[end:]))
    return out


def produce(
    settings: Settings, topic: str, compression: str, messages: Sequence[tuple[bytes | None, bytes]]
) -> float:
    """Produce every message with the simulator's producer settings; return seconds to all-acked."""
    from confluent_kafka import Producer

    conf = producer_config(settings, SimulatorConfig.bulk(1, compression=compression))
    producer = Producer(conf)
    failed: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    t0 = time.perf_counter()
    for i, (key, value) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 5000 == 0:
            producer.poll(0)
    remaining = producer.flush(300)
    seconds = time.perf_counter() - t0
    if remaining or failed:
        raise RuntimeError(
            f"produce to {topic}: {remaining} unacknowledged, {len(failed)} failed "
            f"(first: {failed[:1]})"
        )
    return seconds


# -- raw consume -------------------------------------------------------------------------------


def raw_consume(
    consumer_conf: dict[str, Any], topic: str, partitions: int, n: int
) -> tuple[float, int]:
    """Read all ``n`` messages with assign() from the start, touching value(); (seconds, bytes)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(consumer_conf)
    try:
        t0 = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        count = 0
        nbytes = 0
        last = time.monotonic()
        while count < n:
            msgs = consumer.consume(num_messages=10_000, timeout=0.5)
            if not msgs:
                if time.monotonic() - last > RAW_STALL_SECONDS:
                    raise RuntimeError(f"raw consume of {topic} stalled at {count}/{n} messages")
                continue
            last = time.monotonic()
            for m in msgs:
                if m.error() is not None:
                    continue
                nbytes += len(m.value() or b"")
                count += 1
        seconds = time.perf_counter() - t0
    finally:
        consumer.close()
    if count != n:
        raise RuntimeError(f"raw consume of {topic} read {count} messages, expected {n}")
    return seconds, nbytes


# -- engine ------------------------------------------------------------------------------------


class _TimedConsumer:
    """Wraps the engine's consumer; records when the last record arrived and the last poll ended."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.first_record_at: float | None = None
        self.last_record_at: float | None = None
        self.last_poll_end: float | None = None

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        msgs = self._inner.consume(num_messages=num_messages, timeout=timeout)
        now = time.perf_counter()
        if msgs:
            self.last_record_at = now
            if self.first_record_at is None:
                self.first_record_at = now
        self.last_poll_end = now
        return list(msgs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _TimedEngine(IngestEngine):
    """Records the busy intervals of the engine's chunk writer (decode + both commits)."""

    busy: list[tuple[float, float]]

    def _write_chunk(self, *args: Any, **kwargs: Any) -> Any:  # engine internals: best effort
        t = time.perf_counter()
        try:
            return super()._write_chunk(*args, **kwargs)
        finally:
            self.busy.append((t, time.perf_counter()))


def _idle(start: float, end: float, busy: Sequence[tuple[float, float]]) -> float:
    """Length of [start, end] not covered by any busy interval."""
    if end <= start:
        return 0.0
    covered = 0.0
    for b0, b1 in busy:
        lo, hi = max(start, b0), min(end, b1)
        if hi > lo:
            covered += hi - lo
    return max(0.0, (end - start) - covered)


def run_engine(
    kafka: KafkaSettings, ingest: IngestSettings, lake_dir: Path, topic: str, n: int
) -> EngineRun:
    """One ``ingest_topic`` call into a fresh lake; checks that all ``n`` records landed."""
    consumers: list[_TimedConsumer] = []

    def factory(conf: dict[str, Any]) -> Any:
        c = _TimedConsumer(kafka_consumer_factory(conf))
        consumers.append(c)
        return c

    lake = Lake.from_settings(LakeSettings(uri=str(lake_dir)))
    engine = _TimedEngine(lake, kafka, ingest, consumer_factory=factory)
    engine.busy = []
    contract = TOPICS[topic]
    gc.collect()
    t0 = time.perf_counter()
    report = engine.ingest_topic(contract)
    seconds = time.perf_counter() - t0
    c = consumers[0]
    quiet = 0.0
    if c.last_record_at is not None and c.last_poll_end is not None:
        quiet = _idle(c.last_record_at, c.last_poll_end, engine.busy)
    first = (c.first_record_at - t0) if c.first_record_at is not None else 0.0
    tail = 0.0
    if engine.busy and c.last_record_at is not None:
        tail = max(0.0, max(end for _, end in engine.busy) - c.last_record_at)
    table = lake.open(contract.bronze_path)
    rows = table.to_pyarrow_dataset().count_rows() if table is not None else 0
    if report.records != n or report.valid != n or rows != n:
        raise RuntimeError(
            f"engine run incomplete: records={report.records} valid={report.valid} "
            f"bronze rows={rows}, expected {n} ({report.summary()})"
        )
    return EngineRun(
        seconds=seconds,
        seconds_excl_quiet=seconds - quiet,
        quiet_idle_seconds=quiet,
        first_record_seconds=first,
        tail_seconds=tail,
        records=report.records,
        valid=report.valid,
        commits=report.commits,
        bronze_rows=rows,
        stage_seconds=dict(report.stage_seconds),
    )


def bulk_baseline(
    consumer_conf: dict[str, Any], topic: str, partitions: int, n: int, out: Path
) -> float:
    """The simple bulk path: consume all, join values, pyarrow.json, one write_deltalake."""
    import pyarrow.json as pj
    from confluent_kafka import Consumer, TopicPartition
    from deltalake import write_deltalake

    consumer = Consumer(consumer_conf)
    try:
        t0 = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        values: list[bytes] = []
        while len(values) < n:
            msgs = consumer.consume(num_messages=10_000, timeout=0.5)
            values.extend(m.value() or b"" for m in msgs if m.error() is None)
        table = pj.read_json(pa_buffer(b"\n".join(values)))
        write_deltalake(str(out), table, mode="append")
        return time.perf_counter() - t0
    finally:
        consumer.close()


def pa_buffer(data: bytes) -> Any:
    import pyarrow as pa

    return pa.BufferReader(pa.py_buffer(data))


# -- the run -----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import confluent_kafka
    import deltalake
    import duckdb
    import pyarrow

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "librdkafka": confluent_kafka.libversion()[0],
        "deltalake": deltalake.__version__,
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
    }


@contextmanager
def _broker(bootstrap: str | None, log_dir: Path) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    with EmbeddedBroker(log_dir=log_dir) as broker:
        yield broker.bootstrap_servers


def _log(msg: str) -> None:
    sys.stderr.write(f"[bench] {msg}\n")
    sys.stderr.flush()


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = _log) -> BenchResult:
    """Generate, produce, then time raw consume and the engine per compression and repeat."""
    if cfg.topic not in TOPICS:
        raise ValueError(f"unknown topic {cfg.topic!r}; choose one of {sorted(TOPICS)}")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t = time.perf_counter()
    messages = generate(cfg.topic, cfg.events, cfg.seed, cfg.generator)
    generate_seconds = time.perf_counter() - t
    n = len(messages)
    mean_value = sum(len(v) for _, v in messages) / n
    mean_key = sum(len(k or b"") for k, _ in messages) / n
    log(
        f"generated {n:,} {cfg.topic} messages in {generate_seconds:.1f}s "
        f"(mean value {mean_value:.1f} B, key {mean_key:.1f} B)"
    )
    defaults = IngestSettings()
    ingest = replace(
        defaults,
        max_batch_records=max(defaults.max_batch_records, n + 1),
        max_batch_seconds=max(defaults.max_batch_seconds, 3600.0),
        commit_rows=cfg.commit_rows or defaults.commit_rows,
        quiet_seconds=cfg.quiet_seconds
        if cfg.quiet_seconds is not None
        else defaults.quiet_seconds,
    )
    results: list[CompressionResult] = []
    with ExitStack() as stack:
        work = cfg.work_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="tl-bench-"))
        )
        work.mkdir(parents=True, exist_ok=True)
        bootstrap = stack.enter_context(_broker(cfg.bootstrap, work / "broker-log"))
        run_tag = uuid.uuid4().hex[:6]
        for compression in cfg.compressions:
            prefix = f"bench{run_tag}{compression}."
            kafka = KafkaSettings(
                bootstrap_servers=bootstrap,
                topic_prefix=prefix,
                consumer_group=f"{prefix}ingest",
                partitions=cfg.partitions,
            )
            contract = TOPICS[cfg.topic]
            counts = ensure_topics(kafka, [contract], partitions=cfg.partitions)
            physical = contract.physical_topic(prefix)
            if counts[physical] != cfg.partitions:
                raise RuntimeError(f"{physical} has {counts[physical]} partitions")
            settings = Settings(kafka=kafka)
            produce_seconds = produce(settings, physical, compression, messages)
            log(
                f"{compression}: produced {n:,} to {physical} ({cfg.partitions} partitions) "
                f"in {produce_seconds:.1f}s, all acknowledged"
            )
            result = CompressionResult(compression, physical, produce_seconds)
            results.append(result)
            probe = IngestEngine(Lake.from_settings(LakeSettings(uri=str(work))), kafka, ingest)
            for i in range(cfg.repeat):
                conf = probe.consumer_config() | {"group.id": f"{prefix}raw{i}"}
                load_before = os.getloadavg()[0]
                gc.collect()
                raw_seconds, _ = raw_consume(conf, physical, cfg.partitions, n)
                lake_dir = work / f"lake-{compression}-{i}"
                kafka_i = replace(kafka, consumer_group=f"{prefix}ingest{i}")
                engine = run_engine(kafka_i, ingest, lake_dir, cfg.topic, n)
                shutil.rmtree(lake_dir, ignore_errors=True)
                bulk_seconds = None
                if cfg.bulk_baseline:
                    out = work / f"bulk-{compression}-{i}"
                    gc.collect()
                    bulk_seconds = bulk_baseline(
                        conf | {"group.id": f"{prefix}bulk{i}"}, physical, cfg.partitions, n, out
                    )
                    shutil.rmtree(out, ignore_errors=True)
                trial = Trial(
                    raw_seconds,
                    n / raw_seconds,
                    engine,
                    bulk_seconds,
                    load_before=load_before,
                    load_after=os.getloadavg()[0],
                )
                result.trials.append(trial)
                log(
                    f"{compression} #{i + 1}: raw {trial.raw_rate:,.0f}/s, engine "
                    f"{engine.rate:,.0f}/s ({engine.rate_excl_quiet:,.0f}/s excl. quiet), "
                    f"ratio {trial.ratio:.2f} ({trial.ratio_excl_quiet:.2f}); "
                    f"load {trial.load_before:.1f}→{trial.load_after:.1f}"
                )
    return BenchResult(
        config=cfg,
        events=n,
        mean_value_bytes=mean_value,
        mean_key_bytes=mean_key,
        generate_seconds=generate_seconds,
        engine_settings=asdict(ingest),
        results=results,
        machine=machine_info(),
        started_at=started_at,
    )


# -- output ------------------------------------------------------------------------------------


def format_table(res: BenchResult) -> str:
    m = res.machine
    lines = [
        f"Tidelake ingest throughput — {res.started_at}, {m['cpus']} cores, {m['platform']}",
        f"{res.events:,} {res.config.topic} events, mean value {res.mean_value_bytes:.0f} B "
        f"(key {res.mean_key_bytes:.0f} B), {res.config.partitions} partitions, "
        f"commit_rows={res.engine_settings['commit_rows']:,}, "
        f"quiet_seconds={res.engine_settings['quiet_seconds']:g}, repeat={res.config.repeat} "
        "(medians)",
        "",
        f"{'compression':<12}{'raw msg/s':>12}{'engine/s':>12}{'ratio':>8}"
        f"{'excl.quiet/s':>14}{'ratio':>8}{'quiet s':>9}",
    ]
    lines.extend(
        f"{r.compression:<12}"
        f"{r.median(lambda t: t.raw_rate):>12,.0f}"
        f"{r.median(lambda t: t.engine.rate):>12,.0f}"
        f"{r.median(lambda t: t.ratio):>8.2f}"
        f"{r.median(lambda t: t.engine.rate_excl_quiet):>14,.0f}"
        f"{r.median(lambda t: t.ratio_excl_quiet):>8.2f}"
        f"{r.median(lambda t: t.engine.quiet_idle_seconds):>9.2f}"
        for r in res.results
    )
    loads = [(t.load_before, t.load_after) for r in res.results for t in r.trials]
    lines.append(
        "1-min load average during trials: "
        + ", ".join(f"{a:.1f}→{b:.1f}" for a, b in loads)
        + f" (on {m['cpus']} cores; higher means other work shared the CPUs)"
    )
    if any(t.bulk_seconds for r in res.results for t in r.trials):
        lines += ["", "simple bulk path (join values → pyarrow.json → write_deltalake):"]
        for r in res.results:
            rate = r.median(lambda t: res.events / (t.bulk_seconds or float("inf")))
            raw = r.median(lambda t: t.raw_rate)
            lines.append(f"  {r.compression:<10}{rate:>12,.0f}/s  ratio {rate / raw:.2f}")
    lines += [
        "",
        "engine timeline (median s): call → first record, last record → last commit (tail)",
        f"{'compression':<12}{'first':>8}{'tail':>8}",
    ]
    lines.extend(
        f"{r.compression:<12}{r.median(lambda t: t.engine.first_record_seconds):>8.2f}"
        f"{r.median(lambda t: t.engine.tail_seconds):>8.2f}"
        for r in res.results
    )
    lines += ["", "engine stage seconds (median; decode+writes overlap consume in a thread):"]
    stages = sorted({s for r in res.results for t in r.trials for s in t.engine.stage_seconds})
    lines.append(f"{'compression':<12}{'wall':>8}" + "".join(f"{s:>17}" for s in stages))
    for r in res.results:
        lines.append(
            f"{r.compression:<12}{r.median(lambda t: t.engine.seconds):>8.2f}"
            + "".join(
                f"{r.median(lambda t, s=s: t.engine.stage_seconds.get(s, 0.0)):>17.2f}"  # type: ignore[misc]
                for s in stages
            )
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> tuple[BenchConfig, bool]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--events", type=int, default=1_000_000, help="messages (default 1,000,000)")
    p.add_argument("--partitions", type=int, default=6, help="topic partitions (default 6)")
    p.add_argument(
        "--compression", default="none,lz4", help="producer compressions, comma-separated"
    )
    p.add_argument(
        "--topic", default=DEFAULT_TOPIC, help=f"logical topic (default {DEFAULT_TOPIC})"
    )
    p.add_argument("--commit-rows", type=int, help="engine commit_rows (default: engine default)")
    p.add_argument("--quiet-seconds", type=float, help="engine quiet_seconds (default: engine's)")
    p.add_argument("--repeat", type=int, default=1, help="timed repeats per compression")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", help="use this broker instead of starting an embedded one")
    p.add_argument("--work-dir", type=Path, help="lakes and broker log (default: a temp dir)")
    p.add_argument(
        "--bulk-baseline",
        action="store_true",
        help="also time the simple bulk path (pyarrow.json + one write_deltalake)",
    )
    p.add_argument(
        "--generator",
        choices=("fast", "sim"),
        default="fast",
        help="fast: simulator pool of 20k + fresh event ids (default); sim: simulator for all",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    a = p.parse_args(argv)
    cfg = BenchConfig(
        events=a.events,
        partitions=a.partitions,
        compressions=tuple(c.strip() for c in a.compression.split(",") if c.strip()),
        topic=a.topic,
        commit_rows=a.commit_rows,
        quiet_seconds=a.quiet_seconds,
        repeat=a.repeat,
        seed=a.seed,
        bootstrap=a.bootstrap,
        work_dir=a.work_dir,
        bulk_baseline=a.bulk_baseline,
        generator=a.generator,
    )
    return cfg, a.json


def main(argv: Sequence[str] | None = None) -> int:
    cfg, as_json = parse_args(argv)
    res = run_benchmark(cfg)
    if as_json:
        sys.stderr.write(format_table(res) + "\n")
        sys.stdout.write(json.dumps(res.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(format_table(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
