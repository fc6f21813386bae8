"""Assembling the report: minute rows from the per-minute frame, topic summaries from them."""

from __future__ import annotations

from typing import Any

import polars as pl

from tidelake.quality.reconcile.model import MinuteRow, ReasonCount, TopicSummary

SILVER_FIGURES: tuple[str, ...] = (
    "silver_missing",
    "silver_extra",
    "silver_duplicate_ids",
    "silver_not_in_bronze",
    "bronze_not_in_silver",
)
"""The silver counts of :class:`MinuteRow` and :class:`TopicSummary` (``None``: not built)."""


def minute_rows(minute_df: pl.DataFrame, silver_topics: tuple[str, ...]) -> tuple[MinuteRow, ...]:
    """One :class:`MinuteRow` per row of the per-minute frame; silver figures only where built."""
    rows = []
    for r in minute_df.iter_rows(named=True):
        built = r["topic"] in silver_topics
        rows.append(
            MinuteRow(
                topic=r["topic"],
                minute=r["minute"],
                produced=r["produced"],
                landed=r["landed"],
                missing=r["missing"],
                unexpected=r["unexpected"],
                ledger_duplicates=r["ledger_duplicates"],
                duplicates_seen=r["bronze_rows"] - r["landed"],
                late=r["late"],
                bronze_rows=r["bronze_rows"],
                other_runs=r["other_runs"],
                silver_distinct=r["silver_distinct"] if built else None,
                silver_duplicates=r["silver_duplicates"] if built else None,
                missing_sample=tuple(r["missing_sample"]),
                unexpected_sample=tuple(r["unexpected_sample"]),
                **{c: (r[c] if built else None) for c in SILVER_FIGURES},
            )
        )
    return tuple(rows)


def summaries(
    topics: tuple[str, ...],
    silver_topics: tuple[str, ...],
    minute_rows: tuple[MinuteRow, ...],
    reason_rows: tuple[ReasonCount, ...],
    *,
    samples: dict[str, dict[str, Any]],
    problems: dict[tuple[str, str], int],
    counts: dict[str, dict[str, int]],
) -> tuple[TopicSummary, ...]:
    """Per topic: the sums of its minute rows plus its quarantine and coverage results."""
    minutes_by: dict[str, list[MinuteRow]] = {t: [] for t in topics}
    for m in minute_rows:
        minutes_by[m.topic].append(m)
    out = []
    for topic in topics:
        rows = minutes_by[topic]
        sample = samples.get(topic, {})
        built = topic in silver_topics

        def total(attr: str, rows: list[MinuteRow] = rows, built: bool = built) -> int | None:
            return sum(getattr(m, attr) or 0 for m in rows) if built else None

        silver_events = total("silver_distinct")
        out.append(
            TopicSummary(
                topic=topic,
                minutes=len(rows),
                mismatched_minutes=sum(not m.ok for m in rows),
                produced=sum(m.produced for m in rows),
                landed=sum(m.landed for m in rows),
                missing=sum(m.missing for m in rows),
                unexpected=sum(m.unexpected for m in rows),
                ledger_duplicates=sum(m.ledger_duplicates for m in rows),
                duplicates_seen=sum(m.duplicates_seen for m in rows),
                late=sum(m.late for m in rows),
                other_runs=sum(m.other_runs for m in rows),
                malformed_expected=counts["malformed"].get(topic, 0),
                quarantined=counts["quarantined"].get(topic, 0),
                not_quarantined=problems.get((topic, "not_quarantined"), 0),
                wrong_reason=problems.get((topic, "wrong_reason"), 0),
                unexpected_quarantine=problems.get((topic, "unexpected_quarantine"), 0),
                ledger_offsets=counts["offsets"].get(topic, 0),
                lost_offsets=problems.get((topic, "lost"), 0),
                doubled_offsets=problems.get((topic, "doubled"), 0),
                reason_mismatches=sum(1 for r in reason_rows if r.topic == topic and not r.ok),
                silver_distinct=silver_events,
                missing_sample=tuple(sample.get("missing_sample") or ()),
                unexpected_sample=tuple(sample.get("unexpected_sample") or ()),
                silver_events=silver_events,
                silver_missing_sample=tuple(sample.get("silver_missing_sample") or ()),
                silver_extra_sample=tuple(sample.get("silver_extra_sample") or ()),
                **{c: total(c) for c in SILVER_FIGURES},
            )
        )
    return tuple(out)
