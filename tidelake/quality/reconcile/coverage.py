"""Quarantine and offset coverage: the ledger's Kafka coordinates against bronze and quarantine.

Rules (the comparison's "by Kafka coordinates" half):

- Each malformed ledger row must be in quarantine at its (topic, partition, offset) with reason
  ``expected_error`` (any reason if that is null): else ``not_quarantined`` or ``wrong_reason``.
- Quarantine rows at the coordinates of a non-malformed ledger row are ``unexpected_quarantine``.
  Quarantine rows at coordinates no ledger row knows count (as unexpected) only when the scope is
  unbounded (no run, no window), since nothing else can place them in a scope.
- Coverage: each scoped ledger (partition, offset) appears exactly once across bronze and
  quarantine: zero times is ``lost``, more is ``doubled``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from tidelake.ledger import LedgerKind

COORDS: list[str] = ["topic", "partition", "offset"]

_ISSUE_SCHEMA = {
    "topic": pl.String(),
    "partition": pl.Int32(),
    "offset": pl.Int64(),
    "problem": pl.String(),
    "expected_error": pl.String(),
    "actual_error": pl.String(),
}


@dataclass(frozen=True)
class CoordinateQueries:
    """Lazy queries of the coordinate checks, collected together with the event queries.

    ``reasons``: (topic, reason, expected, quarantined); ``issues``: one row per record problem
    (:class:`~tidelake.quality.reconcile.model.RecordIssue` columns); ``malformed``, ``quarantined``
    and ``ledger_offsets``: the rows counted per topic in the summary.
    """

    reasons: pl.LazyFrame
    issues: pl.LazyFrame
    malformed: pl.LazyFrame
    quarantined: pl.LazyFrame
    ledger_offsets: pl.LazyFrame


def coordinate_queries(
    ledger: pl.LazyFrame,
    scoped: pl.LazyFrame,
    bronze: pl.LazyFrame,
    quarantine: pl.LazyFrame,
    *,
    unbounded: bool,
) -> CoordinateQueries:
    """Build the quarantine and coverage queries (see the module docstring for the rules).

    Args:
        ledger: every ledger row of the compared topics (all runs).
        scoped: the ledger rows in scope (run, window).
        bronze: bronze rows in scope.
        quarantine: quarantine rows of the compared topics.
        unbounded: no run and no window: unknown quarantine coordinates count as unexpected.
    """
    scoped_coords = (
        scoped.select(*COORDS, "kind", "expected_error")
        .unique(subset=COORDS, keep="any")
        .collect()
        .lazy()
    )
    in_scope_q = _quarantine_in_scope(ledger, scoped_coords, quarantine, unbounded=unbounded)
    malformed = scoped_coords.filter(pl.col("kind") == LedgerKind.MALFORMED)
    located = _locate(bronze, quarantine)
    issues = (
        pl.concat(
            [
                _issues_of(df)
                for df in (
                    *_quarantine_problems(malformed, quarantine, in_scope_q),
                    *_coverage_problems(scoped_coords, located),
                )
            ]
        )
        .join(located, on=COORDS, how="left")
        .with_columns(pl.col("bronze_rows", "quarantine_rows").fill_null(0))
        .sort("topic", "problem", "partition", "offset")
    )
    return CoordinateQueries(
        reasons=_reasons(malformed, in_scope_q),
        issues=issues,
        malformed=malformed,
        quarantined=in_scope_q,
        ledger_offsets=scoped_coords,
    )


def _quarantine_in_scope(
    ledger: pl.LazyFrame, scoped_coords: pl.LazyFrame, quarantine: pl.LazyFrame, *, unbounded: bool
) -> pl.LazyFrame:
    """Quarantine rows at scoped ledger coordinates (with the ledger ``kind``), plus, when the
    scope is unbounded, those at coordinates no ledger row knows (``kind`` null)."""
    in_scope = quarantine.join(scoped_coords.select(*COORDS, "kind"), on=COORDS, how="inner")
    if not unbounded:
        return in_scope
    unknown = quarantine.join(ledger.select(COORDS), on=COORDS, how="anti").with_columns(
        pl.lit(None, dtype=pl.String()).alias("kind")
    )
    return pl.concat([in_scope, unknown])


def _quarantine_problems(
    malformed: pl.LazyFrame, quarantine: pl.LazyFrame, in_scope_q: pl.LazyFrame
) -> tuple[pl.LazyFrame, ...]:
    first_q = quarantine.group_by(COORDS).agg(pl.col("error").sort().first().alias("actual_error"))
    matched = malformed.join(first_q, on=COORDS, how="left")
    not_quarantined = matched.filter(pl.col("actual_error").is_null()).with_columns(
        pl.lit("not_quarantined").alias("problem")
    )
    wrong_reason = matched.filter(
        pl.col("expected_error").is_not_null()
        & (pl.col("actual_error") != pl.col("expected_error"))
    ).with_columns(pl.lit("wrong_reason").alias("problem"))
    unexpected = (
        in_scope_q.filter(pl.col("kind").is_null() | (pl.col("kind") != LedgerKind.MALFORMED))
        .group_by(COORDS)
        .agg(pl.col("error").sort().first().alias("actual_error"))
        .with_columns(pl.lit("unexpected_quarantine").alias("problem"))
    )
    return not_quarantined, wrong_reason, unexpected


def _reasons(malformed: pl.LazyFrame, in_scope_q: pl.LazyFrame) -> pl.LazyFrame:
    found = in_scope_q.group_by("topic", pl.col("error").alias("reason")).agg(
        pl.len().alias("quarantined")
    )
    return (
        malformed.group_by("topic", pl.col("expected_error").alias("reason"))
        .agg(pl.len().alias("expected"))
        .join(found, on=["topic", "reason"], how="full", coalesce=True, nulls_equal=True)
        .with_columns(pl.col("expected", "quarantined").fill_null(0).cast(pl.Int64()))
        .sort("topic", "reason", nulls_last=True)
    )


def _locate(bronze: pl.LazyFrame, quarantine: pl.LazyFrame) -> pl.LazyFrame:
    """Rows per coordinate in bronze and in quarantine (materialized: joined twice)."""
    return (
        pl.concat(
            [
                bronze.select(COORDS).with_columns(pl.lit(1).alias("b"), pl.lit(0).alias("q")),
                quarantine.select(COORDS).with_columns(pl.lit(0).alias("b"), pl.lit(1).alias("q")),
            ]
        )
        .group_by(COORDS)
        .agg(
            pl.col("b").sum().cast(pl.Int64()).alias("bronze_rows"),
            pl.col("q").sum().cast(pl.Int64()).alias("quarantine_rows"),
        )
        .collect()
        .lazy()
    )


def _coverage_problems(
    scoped_coords: pl.LazyFrame, located: pl.LazyFrame
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    coverage = (
        scoped_coords.join(located, on=COORDS, how="left")
        .with_columns(pl.col("bronze_rows", "quarantine_rows").fill_null(0))
        .with_columns((pl.col("bronze_rows") + pl.col("quarantine_rows")).alias("times"))
        .filter(pl.col("times") != 1)
        .collect()
        .lazy()
    )
    lost = coverage.filter(pl.col("times") == 0).with_columns(pl.lit("lost").alias("problem"))
    doubled = coverage.filter(pl.col("times") > 1).with_columns(pl.lit("doubled").alias("problem"))
    return lost, doubled


def _issues_of(lf: pl.LazyFrame) -> pl.LazyFrame:
    names = lf.collect_schema().names()
    return lf.select(
        (pl.col(c) if c in names else pl.lit(None)).cast(t).alias(c)
        for c, t in _ISSUE_SCHEMA.items()
    )
