"""The pure comparison: ledger frames against bronze, quarantine and silver frames, no I/O.

:func:`compare` runs named steps: scope the inputs (:func:`_scope`), key every event by
(topic, minute, event_id) across ledger, bronze and silver (:func:`_event_keys`), attribute other
runs' events (:func:`_attribute_runs`), classify each event (:func:`_classify`), aggregate per
minute (:func:`_per_minute`), check Kafka coordinates (:mod:`~tidelake.quality.reconcile.coverage`),
then assemble the report (:mod:`~tidelake.quality.reconcile.summary`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from tidelake.ledger import LedgerKind
from tidelake.quality.reconcile.coverage import coordinate_queries
from tidelake.quality.reconcile.frames import (
    BRONZE_FRAME_SCHEMA,
    EVENT_KINDS,
    LEDGER_FRAME_SCHEMA,
    QUARANTINE_FRAME_SCHEMA,
    SILVER_FRAME_SCHEMA,
    FrameLike,
    coerce,
    in_window,
    utc,
)
from tidelake.quality.reconcile.model import (
    DEFAULT_SAMPLE_SIZE,
    ReasonCount,
    ReconciliationReport,
    RecordIssue,
    Scope,
    ScopeError,
)
from tidelake.quality.reconcile.summary import SILVER_FIGURES, minute_rows, summaries

_KEYS = ["topic", "minute", "event_id"]
_COUNTED = ["ledger_rows", "ledger_duplicates", "late", "bronze_rows", "silver_rows"]


@dataclass(frozen=True)
class _Scoped:
    """The inputs of one comparison, coerced and restricted to its topics (lazy)."""

    topics: tuple[str, ...]
    silver_topics: tuple[str, ...]
    ledger: pl.LazyFrame  # every run: needed to attribute other runs' events
    scoped: pl.LazyFrame  # the ledger rows in scope (run, window)
    bronze: pl.LazyFrame
    quarantine: pl.LazyFrame
    silver: pl.LazyFrame | None
    run_id: str | None
    unbounded: bool


def compare(
    ledger: FrameLike,
    bronze: FrameLike,
    quarantine: FrameLike | None = None,
    *,
    silver: FrameLike | None = None,
    silver_topics: Collection[str] | None = None,
    run_id: str | None = None,
    topics: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    scope: Scope | None = None,
) -> ReconciliationReport:
    """Compare ledger frames with lake frames; pure, no I/O.

    Frames: ``ledger`` has the ledger columns (:data:`LEDGER_FRAME_SCHEMA`, all runs — the other
    runs are needed to attribute events, see below); ``bronze``, ``quarantine`` and ``silver``
    use logical topic names (:func:`bronze_frame`, :func:`quarantine_frame`,
    :func:`silver_frame`). Arrow tables are accepted too. ``silver_topics`` names the topics whose
    silver table is built (default: every compared topic when ``silver`` is given, none
    otherwise); the silver figures of the other topics are ``None`` and never a mismatch.

    Rules:
        - Scope: ledger rows of ``topics`` (default: every topic seen in any frame), of ``run_id``
          (default: all runs), whose ``event_time`` is in ``[since, until)``; malformed rows
          without an ``event_time`` are placed by ``produced_at``.
        - Minutes are UTC minutes of ``event_time``; a late event counts in the minute of its
          ``event_time``, whenever it arrived.
        - Produced = distinct ``event_id``s of kinds on_time/late/duplicate; landed = distinct
          ``event_id``s in bronze. Missing = produced in (topic, minute) but not in bronze at that
          (topic, minute); unexpected = in bronze at (topic, minute) but not produced there (an
          event landing with a shifted ``event_time`` is missing in one minute and unexpected in
          another).
        - Run scoping on a shared lake: with ``run_id``, only the minutes in which that run
          produced are examined, and a bronze (or silver) event there whose ``event_id`` belongs
          to another run's ledger rows (and not to this run's) is attributed to that run: counted
          in ``other_runs``, never as landed or unexpected. Unexpected then means an ``event_id``
          in no ledger row of any run (or this run's event in the wrong minute). Without
          ``run_id`` every minute with a ledger, bronze or silver row in the window is examined.
        - Duplicates are reported, not a mismatch: ``ledger_duplicates`` = ledger rows of kind
          duplicate, ``duplicates_seen`` = bronze rows beyond the first per ``event_id``.
        - Quarantine and coverage by Kafka coordinates: see
          :mod:`tidelake.quality.reconcile.coverage`.
        - Silver (topics in ``silver_topics``): per minute, silver holds each produced
          ``event_id`` exactly once (``silver_missing``, ``silver_duplicate_ids`` = 0), nothing
          the ledger did not produce there (``silver_extra`` = 0), and exactly the distinct
          bronze ids (``silver_not_in_bronze``, ``bronze_not_in_silver`` = 0).
        - Topic totals are the sums of their minute rows; a topic is OK when all its minutes,
          its quarantine reasons and its Kafka coordinates are.
    """
    since, until = utc(since), utc(until)
    if since is not None and until is not None and since >= until:
        raise ScopeError(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    inputs = _scope(ledger, bronze, quarantine, silver, silver_topics, run_id, topics, since, until)
    n = max(sample_size, 0)
    events = _classify(_attribute_runs(_event_keys(inputs), inputs)).collect().lazy()
    coords = coordinate_queries(
        inputs.ledger, inputs.scoped, inputs.bronze, inputs.quarantine, unbounded=inputs.unbounded
    )
    (
        minute_df,
        topic_samples_df,
        reasons_df,
        issue_sample_df,
        issue_counts_df,
        malformed_n,
        quarantined_n,
        offsets_n,
    ) = pl.collect_all(
        [
            _per_minute(events, n),
            _topic_samples(events, n),
            coords.reasons,
            coords.issues.group_by("topic", "problem", maintain_order=True).head(n),
            coords.issues.group_by("topic", "problem").len(),
            coords.malformed.group_by("topic").len(),
            coords.quarantined.group_by("topic").len(),
            coords.ledger_offsets.group_by("topic").len(),
        ]
    )
    rows = minute_rows(minute_df, inputs.silver_topics)
    reason_rows = tuple(
        ReasonCount(r["topic"], r["reason"] or "(unspecified)", r["expected"], r["quarantined"])
        for r in reasons_df.iter_rows(named=True)
    )
    topic_rows = summaries(
        inputs.topics,
        inputs.silver_topics,
        rows,
        reason_rows,
        samples={r["topic"]: r for r in topic_samples_df.iter_rows(named=True)},
        problems={
            (r["topic"], r["problem"]): r["len"] for r in issue_counts_df.iter_rows(named=True)
        },
        counts={
            name: {r["topic"]: r["len"] for r in df.iter_rows(named=True)}
            for name, df in (
                ("malformed", malformed_n),
                ("quarantined", quarantined_n),
                ("offsets", offsets_n),
            )
        },
    )
    return ReconciliationReport(
        scope=scope or Scope(run_id=run_id, topics=inputs.topics, since=since, until=until),
        topics=topic_rows,
        minutes=rows,
        reasons=reason_rows,
        record_issues=tuple(RecordIssue(**r) for r in issue_sample_df.iter_rows(named=True)),
        sample_size=n,
        silver_checked=bool(inputs.silver_topics),
        silver_topics=inputs.silver_topics,
    )


def _scope(
    ledger: FrameLike,
    bronze: FrameLike,
    quarantine: FrameLike | None,
    silver: FrameLike | None,
    silver_topics: Collection[str] | None,
    run_id: str | None,
    topics: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> _Scoped:
    """Coerce the frames, decide the topics, and restrict everything to the scope."""
    led = coerce(ledger, LEDGER_FRAME_SCHEMA, "ledger")
    brz = coerce(bronze, BRONZE_FRAME_SCHEMA, "bronze")
    qua = coerce(quarantine, QUARANTINE_FRAME_SCHEMA, "quarantine")
    slv = None if silver is None else coerce(silver, SILVER_FRAME_SCHEMA, "silver")
    if topics is None:
        seen: set[str] = set()
        for df in (led, brz, qua, slv):
            if df is not None:
                seen.update(df.get_column("topic").unique().to_list())
        topic_list = tuple(sorted(seen))
    else:
        topic_list = tuple(dict.fromkeys(topics))
    if slv is None:
        built: tuple[str, ...] = ()
    elif silver_topics is None:
        built = topic_list
    else:
        built = tuple(t for t in topic_list if t in set(silver_topics))
    in_topics = pl.col("topic").is_in(topic_list)
    event_window = in_window(pl.col("event_time"), since, until)
    led_l = led.lazy().filter(in_topics)
    scoped = led_l.filter(in_window(pl.coalesce("event_time", "produced_at"), since, until))
    if run_id is not None:
        scoped = scoped.filter(pl.col("run_id") == run_id)
    return _Scoped(
        topics=topic_list,
        silver_topics=built,
        ledger=led_l,
        # Materialized once: several queries start from it.
        scoped=scoped.collect().lazy(),
        bronze=brz.lazy().filter(in_topics & event_window),
        quarantine=qua.lazy().filter(in_topics),
        silver=(
            None if slv is None else slv.lazy().filter(pl.col("topic").is_in(built) & event_window)
        ),
        run_id=run_id,
        unbounded=run_id is None and since is None and until is None,
    )


def _ledger_keys(inputs: _Scoped) -> pl.LazyFrame:
    """Scoped ledger events per (topic, minute, event_id): rows, duplicates and late sends."""
    return (
        inputs.scoped.filter(
            pl.col("kind").is_in(EVENT_KINDS)
            & pl.col("event_id").is_not_null()
            & pl.col("event_time").is_not_null()
        )
        .with_columns(_minute())
        .group_by(_KEYS)
        .agg(
            pl.len().alias("ledger_rows"),
            (pl.col("kind") == LedgerKind.DUPLICATE).sum().alias("ledger_duplicates"),
            (pl.col("kind") == LedgerKind.LATE).sum().alias("late"),
        )
    )


def _event_keys(inputs: _Scoped) -> pl.LazyFrame:
    """One row per (topic, minute, event_id) seen in the ledger, bronze or silver, with counts.

    ``produced`` is whether the scoped ledger has it; with ``run_id``, only the minutes in which
    the run produced are kept.
    """
    ledger_keys = _ledger_keys(inputs)
    bronze_keys = (
        inputs.bronze.with_columns(_minute()).group_by(_KEYS).agg(pl.len().alias("bronze_rows"))
    )
    joined = ledger_keys.join(bronze_keys, on=_KEYS, how="full", coalesce=True)
    if inputs.silver is not None:
        silver_keys = (
            inputs.silver.with_columns(_minute()).group_by(_KEYS).agg(pl.len().alias("silver_rows"))
        )
        joined = joined.join(silver_keys, on=_KEYS, how="full", coalesce=True)
    else:
        joined = joined.with_columns(pl.lit(None, dtype=pl.UInt32()).alias("silver_rows"))
    joined = joined.with_columns(
        pl.col("ledger_rows").is_not_null().alias("produced"),
        *(pl.col(c).fill_null(0).cast(pl.Int64()) for c in _COUNTED),
        pl.col("topic").is_in(inputs.silver_topics).alias("has_silver"),
    )
    if inputs.run_id is not None:
        scope_minutes = ledger_keys.select("topic", "minute").unique()
        joined = joined.join(scope_minutes, on=["topic", "minute"], how="semi")
    return joined


def _attribute_runs(events: pl.LazyFrame, inputs: _Scoped) -> pl.LazyFrame:
    """Mark ``foreign``: an event of another run's ledger (not this run's, not produced here).

    Without ``run_id`` nothing is foreign.
    """
    if inputs.run_id is None:
        return events.with_columns(pl.lit(False).alias("foreign"))
    run_id, led = inputs.run_id, inputs.ledger
    with_id = pl.col("event_id").is_not_null()
    own_ids = led.filter((pl.col("run_id") == run_id) & with_id).select("topic", "event_id")
    other_ids = (
        led.filter((pl.col("run_id") != run_id) & with_id)
        .select("topic", "event_id")
        .unique()
        .join(own_ids.unique(), on=["topic", "event_id"], how="anti")
        .with_columns(pl.lit(True).alias("foreign"))
    )
    return events.join(other_ids, on=["topic", "event_id"], how="left").with_columns(
        (pl.col("foreign").fill_null(False) & ~pl.col("produced")).alias("foreign")
    )


def _classify(events: pl.LazyFrame) -> pl.LazyFrame:
    """Per event: missing/unexpected/landed in bronze, and the silver verdicts (own events only)."""
    own = ~pl.col("foreign")
    produced = pl.col("produced")
    in_bronze = pl.col("bronze_rows") > 0
    in_silver = pl.col("silver_rows") > 0
    has_silver = pl.col("has_silver")
    return events.with_columns(
        (produced & ~in_bronze).alias("is_missing"),
        (~produced & own & in_bronze).alias("is_unexpected"),
        (own & in_bronze).alias("is_landed"),
        (has_silver & produced & ~in_silver).alias("silver_missing"),
        (own & ~produced & in_silver).alias("silver_extra"),
        (own & (pl.col("silver_rows") > 1)).alias("silver_duplicate_ids"),
        (own & in_silver & ~in_bronze).alias("silver_not_in_bronze"),
        (has_silver & own & in_bronze & ~in_silver).alias("bronze_not_in_silver"),
    )


def _per_minute(events: pl.LazyFrame, n: int) -> pl.LazyFrame:
    own = ~pl.col("foreign")
    return (
        events.group_by("topic", "minute")
        .agg(
            pl.col("produced").sum(),
            pl.col("is_landed").sum().alias("landed"),
            pl.col("is_missing").sum().alias("missing"),
            pl.col("is_unexpected").sum().alias("unexpected"),
            pl.col("ledger_duplicates").sum(),
            pl.col("late").sum(),
            pl.col("bronze_rows").filter(own).sum(),
            pl.col("foreign").sum().alias("other_runs"),
            (pl.col("silver_rows") > 0).filter(own).sum().alias("silver_distinct"),
            (pl.col("silver_rows") - 1).clip(0).filter(own).sum().alias("silver_duplicates"),
            *(pl.col(c).sum() for c in SILVER_FIGURES),
            pl.col("event_id").filter("is_missing").sort().head(n).alias("missing_sample"),
            pl.col("event_id").filter("is_unexpected").sort().head(n).alias("unexpected_sample"),
        )
        .sort("topic", "minute")
    )


def _topic_samples(events: pl.LazyFrame, n: int) -> pl.LazyFrame:
    def sample(flag: str) -> pl.Expr:
        return pl.col("event_id").filter(flag).unique().sort().head(n)

    return events.group_by("topic").agg(
        sample("is_missing").alias("missing_sample"),
        sample("is_unexpected").alias("unexpected_sample"),
        sample("silver_missing").alias("silver_missing_sample"),
        sample("silver_extra").alias("silver_extra_sample"),
    )


def _minute() -> pl.Expr:
    return pl.col("event_time").dt.truncate("1m").alias("minute")
