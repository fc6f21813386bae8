"""Reconciliation (``tidelake validate``): the producer ledger against what landed in the lake.

The producer ledger (``_ledger/produced``, :mod:`tidelake.ledger`) says what the broker
acknowledged; bronze and quarantine say what the ingest engine landed. This module compares them:

- per (topic, UTC minute of ``event_time``): produced distinct ``event_id``s vs landed distinct
  ``event_id``s in bronze, the missing and unexpected ids (with samples), duplicate deliveries sent
  by the producer and duplicate rows seen in bronze (which silver removes);
- per topic: quarantine counts by reason vs the malformed messages the ledger expected, every
  malformed message matched by its Kafka coordinates, and coverage: every ledger
  (partition, offset) is in exactly one of bronze or quarantine.

:func:`compare` is the pure core (Polars frames in, :class:`ReconciliationReport` out);
:func:`reconcile` reads the Delta tables of a :class:`~tidelake.lake.Lake` and calls it;
:func:`register` adds the ``validate`` subcommand. Nothing here imports Dagster, so asset checks can
call :func:`reconcile` and turn :attr:`ReconciliationReport.ok` into a check result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeAlias

import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads

from tidelake.contracts import QUARANTINE_PATH, TOPICS, TopicContract, topic_for_physical
from tidelake.lake import Lake
from tidelake.ledger import LEDGER_PATH, LedgerKind

log = logging.getLogger(__name__)

SILVER_PREFIX = "silver"
"""Silver tables live at ``silver/<table_name>``; the silver columns appear once they exist."""

DEFAULT_SAMPLE_SIZE = 10

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2

EVENT_KINDS: tuple[str, ...] = (LedgerKind.ON_TIME, LedgerKind.LATE, LedgerKind.DUPLICATE)
"""Ledger kinds that carry a valid event which must land in bronze."""

LEDGER_COLUMNS: tuple[str, ...] = (
    "run_id",
    "topic",
    "event_id",
    "event_time",
    "kind",
    "expected_error",
    "partition",
    "offset",
    "produced_at",
)

_TS = pl.Datetime("us", "UTC")
LEDGER_FRAME_SCHEMA = pl.Schema(
    {
        "run_id": pl.String(),
        "topic": pl.String(),
        "event_id": pl.String(),
        "event_time": _TS,
        "kind": pl.String(),
        "expected_error": pl.String(),
        "partition": pl.Int32(),
        "offset": pl.Int64(),
        "produced_at": _TS,
    }
)
"""Columns :func:`compare` reads from the ledger (those of ``LEDGER_SCHEMA``; topic is logical)."""

BRONZE_FRAME_SCHEMA = pl.Schema(
    {
        "topic": pl.String(),
        "event_id": pl.String(),
        "event_time": _TS,
        "partition": pl.Int32(),
        "offset": pl.Int64(),
    }
)
"""Bronze as :func:`compare` wants it: the LOGICAL topic and the Kafka coordinates, unprefixed
names (see :func:`bronze_frame`)."""

QUARANTINE_FRAME_SCHEMA = pl.Schema(
    {"topic": pl.String(), "partition": pl.Int32(), "offset": pl.Int64(), "error": pl.String()}
)
"""Quarantine as :func:`compare` wants it: the LOGICAL topic (see :func:`quarantine_frame`)."""

SILVER_FRAME_SCHEMA = pl.Schema({"topic": pl.String(), "event_id": pl.String(), "event_time": _TS})
"""Silver as :func:`compare` wants it (optional)."""

FrameLike: TypeAlias = pl.DataFrame | pa.Table


class ScopeError(ValueError):
    """The validation cannot run as asked (no ledger, unknown topic or run, bad window)."""


# --------------------------------------------------------------------------------------------------
# Report types


@dataclass(frozen=True)
class Scope:
    """What a reconciliation covers.

    Args:
        lake_uri: the lake root that was read (empty for in-memory comparisons).
        topic_prefix: environment prefix of the physical Kafka topic names.
        run_id: only this simulator run's ledger rows, or all runs.
        topics: logical topics compared.
        since: inclusive lower bound on ``event_time`` (UTC), or unbounded.
        until: exclusive upper bound on ``event_time`` (UTC), or unbounded.
    """

    lake_uri: str = ""
    topic_prefix: str = ""
    run_id: str | None = None
    topics: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class MinuteRow:
    """One (topic, minute of ``event_time``) of the comparison.

    ``landed`` counts distinct bronze ``event_id``s in scope: the produced ones that arrived plus
    the unexpected ones, never events attributed to other runs (``other_runs``).
    ``duplicates_seen`` is bronze rows beyond the first per ``event_id`` (what silver removes).
    The ``silver_*`` columns are ``None`` while the silver table does not exist.
    """

    topic: str
    minute: datetime
    produced: int
    landed: int
    missing: int
    unexpected: int
    ledger_duplicates: int
    duplicates_seen: int
    late: int
    bronze_rows: int
    other_runs: int = 0
    silver_distinct: int | None = None
    silver_duplicates: int | None = None
    missing_sample: tuple[str, ...] = ()
    unexpected_sample: tuple[str, ...] = ()

    @property
    def silver_ok(self) -> bool:
        """Silver (when present) holds each landed ``event_id`` exactly once."""
        if self.silver_distinct is None:
            return True
        return self.silver_distinct == self.landed and not self.silver_duplicates

    @property
    def ok(self) -> bool:
        """Nothing missing, nothing unexpected, and silver (if any) agrees.

        Duplicates are not a mismatch: the producer re-sends, bronze keeps every delivery and
        silver removes them; lost or doubled *records* are caught by offset coverage instead.
        """
        return self.missing == 0 and self.unexpected == 0 and self.silver_ok

    @property
    def status(self) -> str:
        return "OK" if self.ok else "MISMATCH"


@dataclass(frozen=True)
class ReasonCount:
    """Quarantined records of one (topic, reason): expected by the ledger vs found in the lake."""

    topic: str
    reason: str
    expected: int
    quarantined: int

    @property
    def ok(self) -> bool:
        return self.expected == self.quarantined


@dataclass(frozen=True)
class RecordIssue:
    """One Kafka record the lake got wrong.

    ``problem`` is one of: ``not_quarantined`` (a malformed message is not in quarantine),
    ``wrong_reason`` (quarantined with another reason), ``unexpected_quarantine`` (a record the
    ledger calls valid, or does not know, is in quarantine), ``lost`` (a ledger offset is in neither
    bronze nor quarantine), ``doubled`` (a ledger offset appears more than once across them).
    """

    topic: str
    partition: int
    offset: int
    problem: str
    expected_error: str | None = None
    actual_error: str | None = None
    bronze_rows: int = 0
    quarantine_rows: int = 0


@dataclass(frozen=True)
class TopicSummary:
    """Totals of one topic over the scope, plus its quarantine and coverage results."""

    topic: str
    minutes: int
    mismatched_minutes: int
    produced: int
    landed: int
    missing: int
    unexpected: int
    ledger_duplicates: int
    duplicates_seen: int
    late: int
    other_runs: int
    malformed_expected: int
    quarantined: int
    not_quarantined: int
    wrong_reason: int
    unexpected_quarantine: int
    ledger_offsets: int
    lost_offsets: int
    doubled_offsets: int
    reason_mismatches: int
    silver_distinct: int | None = None
    missing_sample: tuple[str, ...] = ()
    unexpected_sample: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return (
            self.mismatched_minutes == 0
            and self.not_quarantined == 0
            and self.wrong_reason == 0
            and self.unexpected_quarantine == 0
            and self.lost_offsets == 0
            and self.doubled_offsets == 0
            and self.reason_mismatches == 0
        )

    @property
    def status(self) -> str:
        return "OK" if self.ok else "MISMATCH"


@dataclass(frozen=True)
class ReconciliationReport:
    """The whole comparison. ``ok`` is the verdict; ``render()`` and ``to_dict()`` present it."""

    scope: Scope
    topics: tuple[TopicSummary, ...]
    minutes: tuple[MinuteRow, ...]
    reasons: tuple[ReasonCount, ...]
    record_issues: tuple[RecordIssue, ...] = ()
    sample_size: int = DEFAULT_SAMPLE_SIZE
    silver_checked: bool = False

    @property
    def ok(self) -> bool:
        """True when every topic, minute and quarantine reason matches."""
        return all(t.ok for t in self.topics) and all(r.ok for r in self.reasons)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_MISMATCH

    @property
    def mismatched_minutes(self) -> tuple[MinuteRow, ...]:
        return tuple(m for m in self.minutes if not m.ok)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as RFC 3339 strings) including derived ``ok``/``status``."""

        def row(obj: Any) -> dict[str, Any]:
            d = asdict(obj)
            if hasattr(obj, "ok"):
                d["ok"] = obj.ok
            return d

        out: dict[str, Any] = {
            "ok": self.ok,
            "status": "OK" if self.ok else "MISMATCH",
            "scope": asdict(self.scope),
            "sample_size": self.sample_size,
            "silver_checked": self.silver_checked,
            "topics": [row(t) for t in self.topics],
            "quarantine_reasons": [row(r) for r in self.reasons],
            "record_issues": [asdict(i) for i in self.record_issues],
            "minutes": [row(m) for m in self.minutes],
        }
        result: dict[str, Any] = _jsonable(out)
        return result

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def render(self, per_minute: bool = False) -> str:
        """A plain-text report: topic summary, quarantine, record issues, minutes, verdict.

        Args:
            per_minute: show every minute; by default only mismatching minutes are listed.
        """
        return _render(self, per_minute=per_minute)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# --------------------------------------------------------------------------------------------------
# Frames


def _frame(data: FrameLike | None, schema: pl.Schema, what: str) -> pl.DataFrame:
    """Coerce ``data`` to a frame with exactly ``schema``'s columns and types (empty if None)."""
    if data is None:
        return pl.DataFrame(schema=schema)
    df = data if isinstance(data, pl.DataFrame) else pl.DataFrame(pl.from_arrow(data))
    absent = [c for c in schema if c not in df.columns]
    optional = {"produced_at", "expected_error"}
    if [c for c in absent if c not in optional]:
        raise ValueError(f"{what} frame lacks columns {absent}; has {df.columns}")
    df = df.with_columns(pl.lit(None, dtype=schema[c]).alias(c) for c in absent)
    casts = []
    for name, dtype in schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            current = df.schema[name]
            if isinstance(current, pl.Datetime) and current.time_zone is None:
                col = col.dt.replace_time_zone("UTC")
            elif isinstance(current, pl.Datetime) and current.time_zone != "UTC":
                col = col.dt.convert_time_zone("UTC")
        casts.append(col.cast(dtype).alias(name))
    return df.select(casts)


def bronze_frame(table: FrameLike, contract: TopicContract, topic_prefix: str = "") -> pl.DataFrame:
    """Normalize a bronze table (``bronze_schema()`` columns) to :data:`BRONZE_FRAME_SCHEMA`.

    Rule: only rows whose physical ``_topic`` is exactly ``contract.physical_topic(topic_prefix)``
    belong to this environment; rows of other prefixes sharing the lake are dropped.
    """
    df = table if isinstance(table, pl.DataFrame) else pl.DataFrame(pl.from_arrow(table))
    df = df.filter(pl.col("_topic") == contract.physical_topic(topic_prefix))
    df = df.select(
        pl.lit(contract.name).alias("topic"),
        "event_id",
        "event_time",
        pl.col("_partition").alias("partition"),
        pl.col("_offset").alias("offset"),
    )
    return _frame(df, BRONZE_FRAME_SCHEMA, "bronze")


def quarantine_frame(
    table: FrameLike, topic_prefix: str = "", topics: Iterable[str] | None = None
) -> pl.DataFrame:
    """Normalize the quarantine table to :data:`QUARANTINE_FRAME_SCHEMA` with logical topics.

    Rule: a row belongs to this environment only if its physical ``_topic`` is ``topic_prefix`` +
    a contract topic (restricted to ``topics`` when given); the logical name comes from
    :func:`tidelake.contracts.topic_for_physical`.
    """
    wanted = list(topics) if topics is not None else list(TOPICS)
    physical = {TOPICS[t].physical_topic(topic_prefix): t for t in wanted}
    df = table if isinstance(table, pl.DataFrame) else pl.DataFrame(pl.from_arrow(table))
    df = df.filter(pl.col("_topic").is_in(list(physical)))
    mapping = {p: topic_for_physical(p, topic_prefix).name for p in physical}
    df = df.select(
        pl.col("_topic").replace_strict(mapping, return_dtype=pl.String).alias("topic"),
        pl.col("_partition").alias("partition"),
        pl.col("_offset").alias("offset"),
        "error",
    )
    return _frame(df, QUARANTINE_FRAME_SCHEMA, "quarantine")


def _in_window(col: pl.Expr, since: datetime | None, until: datetime | None) -> pl.Expr:
    cond = pl.lit(True)
    if since is not None:
        cond = cond & (col >= since)
    if until is not None:
        cond = cond & (col < until)
    return cond


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --------------------------------------------------------------------------------------------------
# The pure comparison


def compare(
    ledger: FrameLike,
    bronze: FrameLike,
    quarantine: FrameLike | None = None,
    *,
    silver: FrameLike | None = None,
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
    use logical topic names (:func:`bronze_frame`, :func:`quarantine_frame`). Arrow tables are
    accepted too.

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
          produced are examined, and a bronze event there whose ``event_id`` belongs to another
          run's ledger rows (and not to this run's) is attributed to that run: counted in
          ``other_runs``, never as landed or unexpected. Unexpected then means an ``event_id`` in
          no ledger row of any run (or this run's event in the wrong minute). Without ``run_id``
          every minute with a ledger or bronze row in the window is examined.
        - Duplicates are reported, not a mismatch: ``ledger_duplicates`` = ledger rows of kind
          duplicate, ``duplicates_seen`` = bronze rows beyond the first per ``event_id``.
        - Quarantine: each malformed ledger row must be in quarantine at its (topic, partition,
          offset) with reason ``expected_error`` (any reason if that is null). Quarantine rows at
          the coordinates of a non-malformed ledger row are ``unexpected_quarantine``. Quarantine
          rows at coordinates no ledger row knows are counted (as unexpected) only when neither
          ``run_id`` nor a window is given, since nothing else can place them in a scope.
        - Coverage: each scoped ledger (partition, offset) must appear exactly once across bronze
          and quarantine: zero times is a lost record, more is a doubled record. Bronze rows are
          those in the window (or, when the loader pruned, in the run's event-time range).
        - Silver (only if a frame is given): per minute, silver must hold each landed
          ``event_id`` exactly once.
        - Topic totals are the sums of their minute rows; a topic is OK when all its minutes,
          its quarantine reasons and its Kafka coordinates are.
    """
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise ScopeError(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    led = _frame(ledger, LEDGER_FRAME_SCHEMA, "ledger")
    brz = _frame(bronze, BRONZE_FRAME_SCHEMA, "bronze")
    qua = _frame(quarantine, QUARANTINE_FRAME_SCHEMA, "quarantine")
    slv = None if silver is None else _frame(silver, SILVER_FRAME_SCHEMA, "silver")
    if topics is None:
        seen: set[str] = set()
        for df in (led, brz, qua, slv):
            if df is not None:
                seen.update(df.get_column("topic").unique().to_list())
        topic_list = tuple(sorted(seen))
    else:
        topic_list = tuple(dict.fromkeys(topics))
    n = max(sample_size, 0)
    in_topics = pl.col("topic").is_in(topic_list)
    minute = pl.col("event_time").dt.truncate("1m").alias("minute")
    keys = ["topic", "minute", "event_id"]
    coords = ["topic", "partition", "offset"]

    led_l = led.lazy().filter(in_topics)
    scoped = led_l.filter(_in_window(pl.coalesce("event_time", "produced_at"), since, until))
    if run_id is not None:
        scoped = scoped.filter(pl.col("run_id") == run_id)
    # Materialized once: several queries below start from it.
    scoped = scoped.collect().lazy()
    in_window = _in_window(pl.col("event_time"), since, until)
    brz_l = brz.lazy().filter(in_topics & in_window)
    qua_l = qua.lazy().filter(in_topics)

    # ---- per (topic, minute, event_id): ledger rows vs bronze rows (vs silver rows), one join
    ledger_keys = (
        scoped.filter(
            pl.col("kind").is_in(EVENT_KINDS)
            & pl.col("event_id").is_not_null()
            & pl.col("event_time").is_not_null()
        )
        .with_columns(minute)
        .group_by(keys)
        .agg(
            pl.len().alias("ledger_rows"),
            (pl.col("kind") == LedgerKind.DUPLICATE).sum().alias("ledger_duplicates"),
            (pl.col("kind") == LedgerKind.LATE).sum().alias("late"),
        )
    )
    bronze_keys = brz_l.with_columns(minute).group_by(keys).agg(pl.len().alias("bronze_rows"))
    joined = ledger_keys.join(bronze_keys, on=keys, how="full", coalesce=True)
    if slv is not None:
        silver_keys = (
            slv.lazy()
            .filter(in_topics & in_window)
            .with_columns(minute)
            .group_by(keys)
            .agg(pl.len().alias("silver_rows"))
        )
        joined = joined.join(silver_keys, on=keys, how="full", coalesce=True)
    else:
        joined = joined.with_columns(pl.lit(None, dtype=pl.UInt32()).alias("silver_rows"))
    counted = ["ledger_rows", "ledger_duplicates", "late", "bronze_rows", "silver_rows"]
    joined = joined.with_columns(
        pl.col("ledger_rows").is_not_null().alias("produced"),
        *(pl.col(c).fill_null(0).cast(pl.Int64()) for c in counted),
    )
    if run_id is not None:
        scope_minutes = ledger_keys.select("topic", "minute").unique()
        joined = joined.join(scope_minutes, on=["topic", "minute"], how="semi")
        with_id = pl.col("event_id").is_not_null()
        own_ids = led_l.filter((pl.col("run_id") == run_id) & with_id).select("topic", "event_id")
        other_ids = (
            led_l.filter((pl.col("run_id") != run_id) & with_id)
            .select("topic", "event_id")
            .unique()
            .join(own_ids.unique(), on=["topic", "event_id"], how="anti")
            .with_columns(pl.lit(True).alias("foreign"))
        )
        joined = joined.join(other_ids, on=["topic", "event_id"], how="left").with_columns(
            (pl.col("foreign").fill_null(False) & ~pl.col("produced")).alias("foreign")
        )
    else:
        joined = joined.with_columns(pl.lit(False).alias("foreign"))
    own = ~pl.col("foreign")
    joined = joined.with_columns(
        (pl.col("produced") & (pl.col("bronze_rows") == 0)).alias("is_missing"),
        (~pl.col("produced") & own & (pl.col("bronze_rows") > 0)).alias("is_unexpected"),
        (own & (pl.col("bronze_rows") > 0)).alias("is_landed"),
    )
    joined = joined.collect().lazy()
    per_minute = (
        joined.group_by("topic", "minute")
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
            pl.col("event_id").filter("is_missing").sort().head(n).alias("missing_sample"),
            pl.col("event_id").filter("is_unexpected").sort().head(n).alias("unexpected_sample"),
        )
        .sort("topic", "minute")
    )
    topic_samples = joined.group_by("topic").agg(
        pl.col("event_id").filter("is_missing").unique().sort().head(n).alias("missing_sample"),
        pl.col("event_id")
        .filter("is_unexpected")
        .unique()
        .sort()
        .head(n)
        .alias("unexpected_sample"),
    )

    # ---- quarantine and coverage, by Kafka coordinates
    scoped_coords = (
        scoped.select(*coords, "kind", "expected_error")
        .unique(subset=coords, keep="any")
        .collect()
        .lazy()
    )
    qua_scope = qua_l.join(scoped_coords.select(*coords, "kind"), on=coords, how="inner")
    if run_id is None and since is None and until is None:
        all_coords = led_l.select(coords)
        qua_unknown = qua_l.join(all_coords, on=coords, how="anti").with_columns(
            pl.lit(None, dtype=pl.String()).alias("kind")
        )
        qua_scope = pl.concat([qua_scope, qua_unknown])

    malformed = scoped_coords.filter(pl.col("kind") == LedgerKind.MALFORMED)
    first_q = qua_l.group_by(coords).agg(pl.col("error").sort().first().alias("actual_error"))
    matched_q = malformed.join(first_q, on=coords, how="left")
    not_quarantined = matched_q.filter(pl.col("actual_error").is_null()).with_columns(
        pl.lit("not_quarantined").alias("problem")
    )
    wrong_reason = matched_q.filter(
        pl.col("expected_error").is_not_null()
        & (pl.col("actual_error") != pl.col("expected_error"))
    ).with_columns(pl.lit("wrong_reason").alias("problem"))
    unexpected_q = (
        qua_scope.filter(pl.col("kind").is_null() | (pl.col("kind") != LedgerKind.MALFORMED))
        .group_by(coords)
        .agg(pl.col("error").sort().first().alias("actual_error"))
        .with_columns(pl.lit("unexpected_quarantine").alias("problem"))
    )
    reasons = (
        malformed.group_by("topic", pl.col("expected_error").alias("reason"))
        .agg(pl.len().alias("expected"))
        .join(
            qua_scope.group_by("topic", pl.col("error").alias("reason")).agg(
                pl.len().alias("quarantined")
            ),
            on=["topic", "reason"],
            how="full",
            coalesce=True,
            nulls_equal=True,
        )
        .with_columns(pl.col("expected", "quarantined").fill_null(0).cast(pl.Int64()))
        .sort("topic", "reason", nulls_last=True)
    )

    located = (
        pl.concat(
            [
                brz_l.select(coords).with_columns(pl.lit(1).alias("b"), pl.lit(0).alias("q")),
                qua_l.select(coords).with_columns(pl.lit(0).alias("b"), pl.lit(1).alias("q")),
            ]
        )
        .group_by(coords)
        .agg(
            pl.col("b").sum().cast(pl.Int64()).alias("bronze_rows"),
            pl.col("q").sum().cast(pl.Int64()).alias("quarantine_rows"),
        )
        .collect()
        .lazy()
    )
    coverage = (
        scoped_coords.join(located, on=coords, how="left")
        .with_columns(pl.col("bronze_rows", "quarantine_rows").fill_null(0))
        .with_columns((pl.col("bronze_rows") + pl.col("quarantine_rows")).alias("times"))
        .filter(pl.col("times") != 1)
        .collect()
        .lazy()
    )
    lost = coverage.filter(pl.col("times") == 0).with_columns(pl.lit("lost").alias("problem"))
    doubled = coverage.filter(pl.col("times") > 1).with_columns(pl.lit("doubled").alias("problem"))
    issue_schema = {
        "topic": pl.String(),
        "partition": pl.Int32(),
        "offset": pl.Int64(),
        "problem": pl.String(),
        "expected_error": pl.String(),
        "actual_error": pl.String(),
    }

    def issues_of(lf: pl.LazyFrame) -> pl.LazyFrame:
        names = lf.collect_schema().names()
        return lf.select(
            (pl.col(c) if c in names else pl.lit(None)).cast(t).alias(c)
            for c, t in issue_schema.items()
        )

    issues = (
        pl.concat(
            [issues_of(d) for d in (not_quarantined, wrong_reason, unexpected_q, lost, doubled)]
        )
        .join(located, on=coords, how="left")
        .with_columns(pl.col("bronze_rows", "quarantine_rows").fill_null(0))
        .sort("topic", "problem", "partition", "offset")
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
            per_minute,
            topic_samples,
            reasons,
            issues.group_by("topic", "problem", maintain_order=True).head(n),
            issues.group_by("topic", "problem").len(),
            malformed.group_by("topic").len(),
            qua_scope.group_by("topic").len(),
            scoped_coords.group_by("topic").len(),
        ]
    )

    silver_given = slv is not None
    minute_rows = tuple(
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
            silver_distinct=r["silver_distinct"] if silver_given else None,
            silver_duplicates=r["silver_duplicates"] if silver_given else None,
            missing_sample=tuple(r["missing_sample"]),
            unexpected_sample=tuple(r["unexpected_sample"]),
        )
        for r in minute_df.iter_rows(named=True)
    )
    reason_rows = tuple(
        ReasonCount(r["topic"], r["reason"] or "(unspecified)", r["expected"], r["quarantined"])
        for r in reasons_df.iter_rows(named=True)
    )
    record_issues = tuple(RecordIssue(**r) for r in issue_sample_df.iter_rows(named=True))

    # ---- per-topic totals: sums of the minute rows, plus the coordinate checks
    def by_topic(df: pl.DataFrame) -> dict[str, int]:
        return {r["topic"]: r["len"] for r in df.iter_rows(named=True)}

    problems = {(r["topic"], r["problem"]): r["len"] for r in issue_counts_df.iter_rows(named=True)}
    samples = {r["topic"]: r for r in topic_samples_df.iter_rows(named=True)}
    malformed_by, quarantined_by, offsets_by = map(
        by_topic, (malformed_n, quarantined_n, offsets_n)
    )
    minutes_by: dict[str, list[MinuteRow]] = {t: [] for t in topic_list}
    for m in minute_rows:
        minutes_by[m.topic].append(m)
    summaries = []
    for topic in topic_list:
        rows = minutes_by[topic]
        sample = samples.get(topic, {})
        summaries.append(
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
                malformed_expected=malformed_by.get(topic, 0),
                quarantined=quarantined_by.get(topic, 0),
                not_quarantined=problems.get((topic, "not_quarantined"), 0),
                wrong_reason=problems.get((topic, "wrong_reason"), 0),
                unexpected_quarantine=problems.get((topic, "unexpected_quarantine"), 0),
                ledger_offsets=offsets_by.get(topic, 0),
                lost_offsets=problems.get((topic, "lost"), 0),
                doubled_offsets=problems.get((topic, "doubled"), 0),
                reason_mismatches=sum(1 for r in reason_rows if r.topic == topic and not r.ok),
                silver_distinct=(
                    sum(m.silver_distinct or 0 for m in rows) if silver_given else None
                ),
                missing_sample=tuple(sample.get("missing_sample") or ()),
                unexpected_sample=tuple(sample.get("unexpected_sample") or ()),
            )
        )

    return ReconciliationReport(
        scope=scope or Scope(run_id=run_id, topics=topic_list, since=since, until=until),
        topics=tuple(summaries),
        minutes=minute_rows,
        reasons=reason_rows,
        record_issues=record_issues,
        sample_size=n,
        silver_checked=silver_given,
    )


# --------------------------------------------------------------------------------------------------
# Reading the lake


def _read(
    lake: Lake, relative: str, columns: Sequence[str], filter_: pads.Expression | None = None
) -> pa.Table | None:
    table = lake.open(relative)
    if table is None:
        return None
    return table.to_pyarrow_table(columns=list(columns), filters=filter_)


def _time_filter(lo: datetime | None, hi: datetime | None) -> pads.Expression | None:
    """Row filter on ``event_time`` in [lo, hi) that also prunes ``event_date`` partitions."""
    expr: pads.Expression | None = None

    def both(a: pads.Expression | None, b: pads.Expression) -> pads.Expression:
        return b if a is None else a & b

    if lo is not None:
        expr = both(expr, pads.field("event_date") >= pa.scalar(lo.date(), pa.date32()))
        expr = both(expr, pads.field("event_time") >= pa.scalar(lo, pa.timestamp("us", "UTC")))
    if hi is not None:
        expr = both(expr, pads.field("event_date") <= pa.scalar(hi.date(), pa.date32()))
        expr = both(expr, pads.field("event_time") < pa.scalar(hi, pa.timestamp("us", "UTC")))
    return expr


def reconcile(
    lake: Lake,
    *,
    topic_prefix: str = "",
    run_id: str | None = None,
    topics: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> ReconciliationReport:
    """Read the ledger, bronze, quarantine (and silver, if it exists) and :func:`compare` them.

    Only the needed columns are read. Bronze is pruned to the window, or with ``run_id`` and no
    window to the run's event-time range, so a scoped check on a long-lived lake stays cheap.

    Args:
        lake: the lake root.
        topic_prefix: environment prefix of physical topic names (``settings.kafka.topic_prefix``).
        run_id: restrict to one simulator run (see :func:`compare` for how other runs are treated).
        topics: logical topic names; default every contract topic.
        since: inclusive lower bound on ``event_time``; naive datetimes are UTC.
        until: exclusive upper bound on ``event_time``; naive datetimes are UTC.
        sample_size: how many ids/records to list per sample.

    Raises:
        ScopeError: no ledger table, an unknown topic, or a ``run_id`` with no ledger rows.
    """
    since, until = _utc(since), _utc(until)
    topic_list = tuple(dict.fromkeys(topics)) if topics else tuple(TOPICS)
    unknown = [t for t in topic_list if t not in TOPICS]
    if unknown:
        raise ScopeError(f"unknown topic(s) {unknown}; known: {', '.join(TOPICS)}")
    ledger_table = lake.open(LEDGER_PATH)
    if ledger_table is None:
        raise ScopeError(
            f"no producer ledger at {lake.uri(LEDGER_PATH)}; run `tidelake simulate` first"
        )
    ledger = pl.DataFrame(
        pl.from_arrow(
            ledger_table.to_pyarrow_table(
                columns=list(LEDGER_COLUMNS), filters=pads.field("topic").isin(list(topic_list))
            )
        )
    )
    lo, hi = since, until
    if run_id is not None:
        run_rows = ledger.filter(pl.col("run_id") == run_id)
        if run_rows.is_empty():
            raise ScopeError(f"no ledger rows for run {run_id!r} on topics {list(topic_list)}")
        if lo is None and hi is None:
            times = run_rows.get_column("event_time").drop_nulls()
            if times.len():
                # Whole minutes, so a run's first and last minutes are examined in full.
                lo = _as_datetime(times.min()).replace(second=0, microsecond=0)
                hi = _as_datetime(times.max()).replace(second=0, microsecond=0) + timedelta(
                    minutes=1
                )
    time_filter = _time_filter(lo, hi)
    bronze_cols = ("_topic", "_partition", "_offset", "event_id", "event_time")
    bronze_parts: list[pl.DataFrame] = []
    silver_parts: list[pl.DataFrame] = []
    for name in topic_list:
        contract = TOPICS[name]
        raw = _read(lake, contract.bronze_path, bronze_cols, time_filter)
        if raw is not None:
            bronze_parts.append(bronze_frame(raw, contract, topic_prefix))
        silver_raw = _read(
            lake, f"{SILVER_PREFIX}/{contract.table_name}", ("event_id", "event_time")
        )
        if silver_raw is not None:
            silver_parts.append(
                pl.DataFrame(pl.from_arrow(silver_raw)).with_columns(pl.lit(name).alias("topic"))
            )
    bronze = pl.concat(bronze_parts) if bronze_parts else pl.DataFrame(schema=BRONZE_FRAME_SCHEMA)
    physical = [TOPICS[t].physical_topic(topic_prefix) for t in topic_list]
    quarantine_raw = _read(
        lake,
        QUARANTINE_PATH,
        ("_topic", "_partition", "_offset", "error"),
        pads.field("_topic").isin(physical),
    )
    quarantine = (
        quarantine_frame(quarantine_raw, topic_prefix, topic_list)
        if quarantine_raw is not None
        else None
    )
    silver = (
        pl.concat([_frame(s, SILVER_FRAME_SCHEMA, "silver") for s in silver_parts])
        if silver_parts
        else None
    )
    log.debug(
        "reconcile: %d ledger rows, %d bronze rows, %d quarantine rows",
        ledger.height,
        bronze.height,
        0 if quarantine is None else quarantine.height,
    )
    return compare(
        ledger,
        bronze,
        quarantine,
        silver=silver,
        run_id=run_id,
        topics=topic_list,
        since=since,
        until=until,
        sample_size=sample_size,
        scope=Scope(
            lake_uri=lake.root,
            topic_prefix=topic_prefix,
            run_id=run_id,
            topics=topic_list,
            since=since,
            until=until,
        ),
    )


def _as_datetime(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Rendering


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Fixed-width text table: first column left-aligned, numbers right-aligned, rest left."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [
        all(isinstance(row[i], int) or row[i] is None for row in rows) and i > 0
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if numeric[i] else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(list(headers)), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _render(report: ReconciliationReport, per_minute: bool) -> str:
    s = report.scope
    since = s.since.isoformat() if s.since else "-inf"
    until = s.until.isoformat() if s.until else "+inf"
    window = f"[{since}, {until})"
    out = [
        "Tidelake reconciliation: producer ledger vs lake",
        f"  lake    {s.lake_uri or '(in memory)'}",
        f"  run     {s.run_id or 'all runs'}",
        f"  prefix  {s.topic_prefix!r}",
        f"  window  {window} on event_time (UTC)",
        "",
    ]
    silver = report.silver_checked
    headers = [
        "topic",
        "minutes",
        "produced",
        "landed",
        "missing",
        "unexpected",
        "dup_sent",
        "dup_seen",
        "late",
        *(["silver"] if silver else []),
        "malformed",
        "quarantined",
        "bad_quar",
        "offsets",
        "lost",
        "doubled",
        "status",
    ]
    shown_topics = [t for t in report.topics if not t.ok or t.minutes or t.ledger_offsets]
    empty = [t.topic for t in report.topics if t not in shown_topics]
    rows = [
        [
            t.topic,
            t.minutes,
            t.produced,
            t.landed,
            t.missing,
            t.unexpected,
            t.ledger_duplicates,
            t.duplicates_seen,
            t.late,
            *([t.silver_distinct] if silver else []),
            t.malformed_expected,
            t.quarantined,
            t.not_quarantined + t.wrong_reason + t.unexpected_quarantine,
            t.ledger_offsets,
            t.lost_offsets,
            t.doubled_offsets,
            t.status,
        ]
        for t in shown_topics
    ]
    out += ["Per topic", *_table(headers, rows)]
    if empty:
        out.append(f"  nothing in scope for: {', '.join(empty)}")
    out.append("")
    if any(t.other_runs for t in report.topics):
        other = ", ".join(f"{t.topic}={t.other_runs}" for t in report.topics if t.other_runs)
        out += [f"  ignored events of other runs in the same minutes: {other}", ""]

    if report.reasons:
        out += [
            "Quarantine by reason (expected from the ledger vs found in the lake)",
            *_table(
                ["topic", "reason", "expected", "quarantined", "status"],
                [
                    [r.topic, r.reason, r.expected, r.quarantined, "OK" if r.ok else "MISMATCH"]
                    for r in report.reasons
                ],
            ),
            "",
        ]

    if report.record_issues:
        out += [
            f"Record problems by Kafka coordinates (first {report.sample_size} per kind)",
            *_table(
                ["topic", "partition", "offset", "problem", "expected", "actual", "bronze", "quar"],
                [
                    [
                        i.topic,
                        i.partition,
                        i.offset,
                        i.problem,
                        i.expected_error,
                        i.actual_error,
                        i.bronze_rows,
                        i.quarantine_rows,
                    ]
                    for i in report.record_issues
                ],
            ),
            "",
        ]

    shown = report.minutes if per_minute else report.mismatched_minutes
    if shown:
        title = "Per minute" if per_minute else "Mismatching minutes"
        m_headers = [
            "topic",
            "minute (UTC)",
            "produced",
            "landed",
            "missing",
            "unexpected",
            "dup_sent",
            "dup_seen",
            "late",
            *(["silver"] if silver else []),
            "status",
        ]
        m_rows = [
            [
                m.topic,
                m.minute,
                m.produced,
                m.landed,
                m.missing,
                m.unexpected,
                m.ledger_duplicates,
                m.duplicates_seen,
                m.late,
                *([m.silver_distinct] if silver else []),
                m.status,
            ]
            for m in shown
        ]
        out += [title, *_table(m_headers, m_rows), ""]

    samples: list[str] = []
    for t in report.topics:
        if t.missing_sample:
            samples.append(f"  {t.topic} missing ({t.missing}): {', '.join(t.missing_sample)}")
        if t.unexpected_sample:
            samples.append(
                f"  {t.topic} unexpected ({t.unexpected}): {', '.join(t.unexpected_sample)}"
            )
    if samples:
        out += [f"Sample event_ids (first {report.sample_size})", *samples, ""]

    if not report.topics or not any(t.ledger_offsets or t.landed for t in report.topics):
        out.append("Nothing produced or landed in this scope.")
    bad = list(dict.fromkeys([t.topic for t in report.topics if not t.ok]))
    bad += [r.topic for r in report.reasons if not r.ok and r.topic not in bad]
    out.append("RESULT: OK" if report.ok else f"RESULT: MISMATCH in {', '.join(bad)}")
    return "\n".join(out) + "\n"
