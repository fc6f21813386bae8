"""Synthetic bronze and silver tables for the derived-layer benchmarks (no broker needed).

Rows follow the contract of ``shop.page_views`` (``tidelake.contracts``) and are written the
way the ingest engine writes them: one Delta commit per micro-batch, Delta-partitioned by
``event_date``/``event_hour``, each commit carrying the ``tidelake`` annotation (ranges, the
hours it touched) and the exactly-once txn per Kafka partition. Producer duplicates (the same
``event_id`` at a new offset) are mixed in at ``dup_rate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, Transaction, write_deltalake

from tidelake.contracts import BRONZE_PARTITION_BY, TOPICS, TopicContract
from tidelake.ingest.annotations import CommitAnnotation
from tidelake.ingest.positions import hour_partition_key
from tidelake.lake import Lake

PAGE_VIEWS = TOPICS["shop.page_views"]
PARTITIONS = 3
GROUP = "bench"


@dataclass
class BronzeWriter:
    """Appends synthetic micro-batches to ``bronze/shop_page_views``, offsets continuing."""

    lake: Lake
    contract: TopicContract = PAGE_VIEWS
    dup_rate: float = 0.01
    seed: int = 7
    next_offset: list[int] = field(default_factory=lambda: [0] * PARTITIONS)
    serial: int = 0

    def batch(self, start: datetime, seconds: float, rows: int, lateness_s: float = 2.0) -> int:
        """Append ``rows`` events with event_time in ``[start, start + seconds)``; one commit."""
        rng = np.random.default_rng(self.seed + self.serial)
        n_dup = int(rows * self.dup_rate)
        n_new = rows - n_dup
        ids = np.arange(self.serial, self.serial + n_new, dtype=np.int64)
        self.serial += n_new
        dup_idx = rng.integers(0, n_new, n_dup) if n_new and n_dup else np.zeros(0, np.int64)
        all_ids = np.concatenate([ids, ids[dup_idx]])
        offs_us = rng.integers(0, int(seconds * 1e6), n_new, dtype=np.int64)
        event_us = int(start.timestamp() * 1e6) + np.concatenate([offs_us, offs_us[dup_idx]])
        order = np.argsort(event_us, kind="stable")
        all_ids, event_us = all_ids[order], event_us[order]
        n = all_ids.size
        part = (all_ids % PARTITIONS).astype(np.int32)
        offsets = np.empty(n, dtype=np.int64)
        ranges: dict[int, tuple[int, int]] = {}
        for p in range(PARTITIONS):
            mask = part == p
            k = int(mask.sum())
            first = self.next_offset[p]
            offsets[mask] = np.arange(first, first + k)
            self.next_offset[p] = first + k
            ranges[p] = (first, first + k)
        table = self._rows(all_ids, event_us, part, offsets, lateness_s)
        hours = sorted(
            {
                hour_partition_key(d, h)
                for d, h in zip(
                    table.column("event_date").to_pylist(),
                    table.column("event_hour").to_pylist(),
                    strict=True,
                )
            }
        )
        annotation = CommitAnnotation(
            kind="ingest",
            topic=self.contract.name,
            group=GROUP,
            ranges=ranges,
            stats={"rows": n, "hours": hours},
        )
        write_deltalake(
            self.lake.uri(self.contract.bronze_path),
            table,
            mode="append",
            partition_by=list(BRONZE_PARTITION_BY),
            storage_options=self.lake.storage_options,
            commit_properties=CommitProperties(
                custom_metadata=annotation.custom_metadata(),
                app_transactions=[
                    Transaction(f"{GROUP}/{self.contract.name}/{p}", self.next_offset[p])
                    for p in range(PARTITIONS)
                ],
            ),
        )
        return n

    def _rows(
        self,
        ids: np.ndarray,
        event_us: np.ndarray,
        part: np.ndarray,
        offsets: np.ndarray,
        lateness_s: float,
    ) -> pa.Table:
        n = ids.size
        id_str = pc.binary_join_element_wise(
            "00000000-0000-4000-8000-", pc.utf8_lpad(pa.array(ids).cast(pa.string()), 12, "0"), ""
        )
        users = pc.binary_join_element_wise("u", pa.array(ids % 5_000).cast(pa.string()), "")
        sessions = pc.binary_join_element_wise("s", pa.array(ids % 20_000).cast(pa.string()), "")
        products = pc.binary_join_element_wise("p", pa.array(ids % 500).cast(pa.string()), "")
        ts = pa.array(event_us, pa.timestamp("us", tz="UTC"))
        ingested = pa.array(event_us + int(lateness_s * 1e6), pa.timestamp("us", tz="UTC"))
        kafka_ts = pa.array(event_us + int(lateness_s * 5e5), pa.timestamp("us", tz="UTC"))
        days = (event_us // 86_400_000_000).astype(np.int32)
        hours = ((event_us // 3_600_000_000) % 24).astype(np.int32)
        schema = self.contract.bronze_schema()
        cols: dict[str, pa.Array] = {
            "event_id": id_str,
            "event_type": pa.array(np.full(n, "page_view", dtype=object), pa.string()),
            "event_time": ts,
            "received_time": ts,
            "user_id": users,
            "session_id": sessions,
            "product_id": products,
            "page": pa.array(np.full(n, "/product", dtype=object), pa.string()),
            "referrer": pa.nulls(n, pa.string()),
            "device": pa.array(np.full(n, "web", dtype=object), pa.string()),
            "_topic": pa.array(np.full(n, self.contract.name, dtype=object), pa.string()),
            "_partition": pa.array(part, pa.int32()),
            "_offset": pa.array(offsets, pa.int64()),
            "_kafka_timestamp": kafka_ts,
            "_key": users,
            "_key_base64": pa.array(np.zeros(n, dtype=bool)),
            "_ingested_at": ingested,
            "event_date": pa.array(days, pa.int32()).cast(pa.date32()),
            "event_hour": pa.array(hours, pa.int32()),
        }
        return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def hour_floor(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def write_history(writer: BronzeWriter, end: datetime, hours: int, rows_per_hour: int) -> int:
    """``hours`` closed hours of history ending at ``end`` (exclusive), one commit per hour."""
    total = 0
    start = hour_floor(end) - timedelta(hours=hours)
    for i in range(hours):
        total += writer.batch(start + timedelta(hours=i), 3600.0, rows_per_hour)
    return total
