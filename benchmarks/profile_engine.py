"""Where the engine's time goes, per chunk, without a broker: a breakdown for the engine owner.

It builds one engine chunk (``--rows``, default 250,000 = the engine's ``commit_rows``) of
simulator messages as the engine's consumer would hand it over, then times each step of
``IngestEngine._write_chunk`` in isolation, ``--repeat`` times (best of, because the
machine is shared: the minimum is the least disturbed figure):

* ``chunk_build``: the Python lists → ``RawChunk`` step of ``_ChunkBuilder`` (from fake messages);
* ``binary_array``: ``decode._binary_array`` for values and keys;
* ``duckdb_query``: the validation query (``ChunkDecoder``'s SQL) to an Arrow table;
* ``split``: ``ChunkDecoder._split`` (Arrow assembly of the bronze and quarantine tables);
* ``decode_total``: ``ChunkDecoder.decode`` end to end (the engine's ``decode`` stage);
* ``write_bronze``: one ``write_deltalake`` append of the decoded rows into a fresh local table
  partitioned like bronze (the engine's ``write_bronze`` stage, minus the txn bookkeeping);
* ``account``: ``IngestEngine._account`` (lateness, touched hours).

It also prints ``pyarrow.json`` parsing the same bytes, as a reference for a parse-only cost, and
the DuckDB query split into "parse only" and "parse + rules".

Usage::

    .venv/bin/python benchmarks/profile_engine.py [--rows 250000] [--repeat 3] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
from deltalake import write_deltalake

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_throughput import DEFAULT_TOPIC, generate

from tidelake.contracts import BRONZE_PARTITION_BY, TOPICS
from tidelake.ingest import BatchReport, decode_sql
from tidelake.ingest import decode as dec
from tidelake.ingest.consumer import ChunkBuilder
from tidelake.ingest.report import account


class _Msg:
    """Stands in for ``confluent_kafka.Message`` (methods only, like the real one)."""

    __slots__ = ("_k", "_o", "_p", "_t", "_v")

    def __init__(self, k: bytes | None, v: bytes, p: int, o: int, t: int) -> None:
        self._k, self._v, self._p, self._o, self._t = k, v, p, o, t

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes:
        return self._v

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return (1, self._t)

    def error(self) -> None:
        return None


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    secs = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t)
    return min(secs), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="per-step timing of one engine chunk")
    p.add_argument("--rows", type=int, default=250_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--topic", default=DEFAULT_TOPIC)
    p.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    a = p.parse_args(argv)

    contract = TOPICS[a.topic]
    data = generate(a.topic, a.rows, 0)
    now_ms = int(time.time() * 1000)
    msgs = [_Msg(k, v, i % 6, i // 6, now_ms) for i, (k, v) in enumerate(data)]
    n = len(msgs)
    rows: list[tuple[str, float]] = []

    def build() -> dec.RawChunk:
        b = ChunkBuilder()
        for i in range(0, n, 10_000):
            b.extend(msgs[i : i + 10_000])  # type: ignore[arg-type]
        return b.build("bench.topic")

    s, chunk = timed(build, a.repeat)
    rows.append(("chunk_build (consume side, per chunk)", s))

    decoder = dec.ChunkDecoder(contract, threads=a.threads)
    ingested_at = datetime.now(UTC)
    s, raw = timed(lambda: dec._binary_array(chunk.values), a.repeat)
    s2, keys = timed(lambda: dec._binary_array(chunk.keys), a.repeat)
    rows.append(("_binary_array(values) + (keys)", s + s2))

    lengths = np.fromiter(map(len, chunk.values), dtype=np.int64, count=n)
    table = pa.table(
        {
            "idx": pa.array(np.arange(n, dtype=np.int64)),
            "oversize": pa.array(lengths > decoder.max_message_bytes),
            "raw": raw,
            "key": keys,
        }
    )
    con = decoder._con
    con.register("chunk", table)

    def query(sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        return con.sql(sql, params=params).to_arrow_table()

    params = {"ingested_at": ingested_at, "max_bytes": str(decoder.max_message_bytes)}
    s, out = timed(lambda: query(decoder._query, params), a.repeat)
    rows.append(("duckdb validation query → arrow", s))
    fields = contract.all_fields
    sql_types = decode_sql._SQL_TYPES
    typed_spec = "{" + ",".join(f'"{f.name}":"{sql_types[f.kind]}"' for f in fields) + "}"
    s, _ = timed(
        lambda: query(f"SELECT from_json(decode(raw), '{typed_spec}') AS v FROM chunk"),
        a.repeat,
    )
    rows.append(("  of which: one from_json(typed) only", s))
    json_spec = "{" + ",".join(f'"{f.name}":"JSON"' for f in fields) + "}"
    s, _ = timed(
        lambda: query(f"SELECT from_json(decode(raw), '{json_spec}') AS s FROM chunk"), a.repeat
    )
    rows.append(("  of which: one from_json(JSON fragments) only", s))
    s, _ = timed(lambda: query("SELECT json_type(decode(raw)) FROM chunk"), a.repeat)
    rows.append(("  of which: json_type(txt) only", s))
    con.unregister("chunk")

    s, decoded = timed(lambda: decoder._split(chunk, raw, keys, out, ingested_at), a.repeat)
    rows.append(("ChunkDecoder._split", s))
    s, decoded = timed(lambda: decoder.decode(chunk, ingested_at), a.repeat)
    rows.append(("ChunkDecoder.decode total (engine 'decode' stage)", s))
    assert decoded.valid.num_rows == n, decoded.invalid.column("error_detail")[:3]

    with tempfile.TemporaryDirectory() as tmp:
        i = 0

        def write() -> None:
            nonlocal i
            i += 1
            write_deltalake(
                f"{tmp}/t{i}", decoded.valid, mode="append", partition_by=list(BRONZE_PARTITION_BY)
            )

        s, _ = timed(write, a.repeat)
        rows.append(("write_deltalake(valid) fresh table", s))

        def accounting() -> None:
            account(BatchReport("t", "t"), decoded.valid, decoded.invalid, [], set())

        s, _ = timed(accounting, a.repeat)
        rows.append(("report.account", s))

    blob = b"\n".join(chunk.values)
    s, _ = timed(lambda: pj.read_json(pa.BufferReader(blob)), a.repeat)
    rows.append(("reference: pyarrow.json.read_json of the same bytes", s))
    decoder.close()

    mean = sum(map(len, chunk.values)) / n
    print(f"one chunk of {n:,} {a.topic} records (mean {mean:.0f} B), best of {a.repeat}")
    print(f"{'step':<55}{'seconds':>9}{'µs/rec':>9}{'k rec/s':>10}")
    for name, secs in rows:
        print(f"{name:<55}{secs:>9.3f}{secs / n * 1e6:>9.2f}{n / secs / 1e3:>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
