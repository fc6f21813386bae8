"""The refresh of one derived table: stale hours in, one idempotent Delta commit out.

Protocol (one attempt; a conflict restarts it from step 1, up to :data:`MAX_ATTEMPTS` times):

1. Open every input once. Its loaded version is *pinned*: the rows read and the watermark
   written both refer to it, so input commits landing meanwhile stay stale for the next run.
2. Stale hours = the hours input commits newer than the output's watermarks touched, minus
   those a partial refresh since has already written from a new enough input version
   (:mod:`tidelake.layers.lineage`). ``hours=keys`` narrows them to ``keys`` plus every stale
   hour outside the Dagster partition space (no partition run would ever request those).
3. Read exactly those hours' partitions of every input and compute the output rows.
4. Re-read the output's log: if anything committed since step 2, restart (deltalake accepts a
   *lower* txn version silently, so this check is what keeps a watermark from moving back).
5. Commit once: ``mode="overwrite"`` with a predicate naming exactly the hours written (an hour
   with no rows is thereby emptied), the derive annotation, the serial txn, and, only when no
   stale hour is left, the input watermarks. A racing refresh committing between 4 and 5 makes
   this commit fail with ``CommitFailedError`` (same serial app_id): restart.

Because the commit replaces whole hours and is atomic, a crash anywhere or a re-run never
double-counts; a re-run with nothing stale makes no commit at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from tidelake.contracts import BRONZE_PARTITION_BY
from tidelake.ingest.faults import env_fault_injector
from tidelake.ingest.tables import add_missing_columns, ensure_table
from tidelake.lake import Lake
from tidelake.layers.hours import (
    in_partition_space,
    key_of,
    overwrite_predicate,
    pruning_filters,
    shifted,
)
from tidelake.layers.lineage import (
    DeriveAnnotation,
    partial_refreshes,
    partition_keys,
    serial_app_id,
    touches_since,
    watermark_app_id,
)
from tidelake.layers.result import HourResult, RefreshResult, StaleHours
from tidelake.settings import RefreshSettings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
"""Refresh attempts when other commits to the output keep getting in first."""


class RefreshConflictError(RuntimeError):
    """Other commits to the output won every attempt; nothing was written by this refresh."""


@dataclass
class Built:
    """An output's rows for some hours and per-hour figures (``HourResult.details``)."""

    rows: pa.Table
    details: dict[str, dict[str, int]] = field(default_factory=dict)


Builder = Callable[[Mapping[str, pa.Table], Sequence[str]], Built]
"""Computes the output rows of ``hours`` from each existing input's rows of those hours."""


@dataclass(frozen=True)
class Derivation:
    """A derived table: where it lives, what it reads, how its rows are computed.

    Attributes:
        output: output table path, e.g. ``silver/shop_clicks``.
        inputs: input table paths; missing ones are skipped until they exist.
        schema: the output's Arrow schema (partitioned by ``event_date``/``event_hour``).
        description: what the table is (Delta table description).
        build: see :data:`Builder`.
        columns: the input columns ``build`` needs (None: all); read nothing else.
        context_hours: input path → how many hours before each refreshed hour ``build`` also
            needs to read from that input (trailing windows: a fraud rule's last hour, a
            sensor's trailing readings). Those rows are context only: ``build`` returns rows of
            the refreshed hours alone.
        affects_hours: input path → how many hours after an input hour its rows can change
            (a page view at 10:50 decides flags of purchases until 11:20: 1). A touched input
            hour makes those later output hours stale too, up to the open hour (later hours
            have no data yet and are computed, with this context, when they get some).
        input_columns: input path → the columns to read from it, overriding ``columns``.
    """

    output: str
    inputs: tuple[str, ...]
    schema: pa.Schema
    description: str
    build: Builder
    columns: tuple[str, ...] | None = None
    context_hours: Mapping[str, int] = field(default_factory=dict)
    affects_hours: Mapping[str, int] = field(default_factory=dict)
    input_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def read_keys(self, path: str, keys: Sequence[str]) -> list[str]:
        """The hours of input ``path`` to read for refreshing ``keys`` (with its context)."""
        before = self.context_hours.get(path, 0)
        wanted = set(keys)
        for key in keys:
            wanted.update(shifted(key, -n) for n in range(1, before + 1))
        return sorted(wanted)

    def affected(self, path: str, hours: Collection[str], now: datetime | None) -> set[str]:
        """Output hours that input ``path``'s changed ``hours`` can change (see
        ``affects_hours``): each hour and up to ``affects_hours[path]`` after it, never past the
        open hour."""
        after = self.affects_hours.get(path, 0)
        if not after:
            return set(hours)
        limit = (now or datetime.now(UTC)).astimezone(UTC)
        open_hour = key_of(limit.date(), limit.hour)
        out = set(hours)
        for hour in hours:
            out.update(
                later for n in range(1, after + 1) if (later := shifted(hour, n)) <= open_hour
            )
        return out


@dataclass
class _Snapshot:
    inputs: dict[str, DeltaTable]
    output: DeltaTable | None
    stale: set[str]

    @property
    def versions(self) -> dict[str, int]:
        return {path: table.version() for path, table in self.inputs.items()}


def stale_hours(lake: Lake, derivation: Derivation, now: datetime | None = None) -> StaleHours:
    """The hours of ``derivation.output`` whose inputs changed since its watermarks."""
    snap = _snapshot(lake, derivation, now)
    return StaleHours(hours=sorted(snap.stale), input_versions=snap.versions)


def refresh(
    lake: Lake,
    derivation: Derivation,
    hours: Collection[str] | None,
    settings: RefreshSettings,
    now: datetime | None = None,
    max_hours: int | None = None,
) -> RefreshResult:
    """Recompute the stale hours of ``derivation.output`` in one commit (module docstring).

    Args:
        lake: where the tables live.
        derivation: the table to refresh.
        hours: None for every stale hour; else the stale hours among these keys plus every
            stale hour outside ``[partitions_start, current hour + 1]``.
        settings: ``partitions_start`` bounds the partition space.
        now: the current time (tests); defaults to the clock.
        max_hours: write at most this many of the chosen hours, the newest first (a partial
            refresh: the rest stay stale for the next one). Bounds a round's memory and time
            when a backfill left days stale; the newest hours are the ones being watched.

    Raises:
        RefreshConflictError: other commits to the output got in first :data:`MAX_ATTEMPTS`
            times.
    """
    wanted = None if hours is None else set(hours)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        snap = _snapshot(lake, derivation, now)
        chosen = {
            h
            for h in snap.stale
            if wanted is None
            or h in wanted
            or not in_partition_space(h, settings.partitions_start, now)
        }
        if max_hours is not None and len(chosen) > max_hours:
            chosen = set(sorted(chosen)[-max_hours:])
        complete = chosen == snap.stale
        versions = snap.versions
        if not chosen:
            return RefreshResult(derivation.output, [], None, versions, complete)
        keys = sorted(chosen)
        built = derivation.build(
            {
                path: read_hours(
                    table,
                    derivation.read_keys(path, keys),
                    derivation.input_columns.get(path, derivation.columns),
                )
                for path, table in snap.inputs.items()
            },
            keys,
        )
        results = _hour_results(built, keys)
        version = _commit(lake, derivation, snap, keys, built, results, complete)
        if version is not None:
            return RefreshResult(derivation.output, results, version, versions, complete)
        log.info(
            "%s: another commit got in first; refreshing again (%d)", derivation.output, attempt
        )
        time.sleep(min(0.05 * attempt, 0.5))
    raise RefreshConflictError(
        f"{derivation.output}: other commits got in first {MAX_ATTEMPTS} times; nothing written"
    )


def read_hours(
    table: DeltaTable, keys: Sequence[str], columns: Sequence[str] | None = None
) -> pa.Table:
    """The rows of exactly the hour partitions ``keys`` at the table's loaded version (only
    ``columns``, when given)."""
    dataset = table.to_pyarrow_dataset(file_pruning_predicate=pruning_filters(keys))
    return dataset.to_table(columns=list(columns) if columns is not None else None)


def _snapshot(lake: Lake, derivation: Derivation, now: datetime | None = None) -> _Snapshot:
    """Pinned inputs, the output, and the stale hours (lineage module docstring).

    Rule: hour H is stale when an input commit after the output's watermark for that input
    changed H, and no partial refresh since the last complete one wrote H from an input version
    at or past that commit.
    """
    inputs = {p: t for p in derivation.inputs if (t := lake.open(p)) is not None}
    output = lake.open(derivation.output)
    partials = [] if output is None else partial_refreshes(output)
    everywhere: set[str] | None = None
    stale: set[str] = set()
    for path, table in inputs.items():
        since = (
            None
            if output is None
            else output.transaction_version(watermark_app_id(derivation.output, path))
        )
        covered: dict[str, int] = {}
        for note in partials:
            read = (note.get("inputs") or {}).get(path)
            if read is not None:
                for hour in note.get("hours") or []:
                    covered[hour] = max(covered.get(hour, -1), int(read))
        every_hour: set[str] | None = None  # of this input and the output, read once
        for version, hours in touches_since(table, since):
            if hours is None:
                if every_hour is None:
                    if everywhere is None:
                        everywhere = partition_keys(output) if output is not None else set()
                    every_hour = everywhere | partition_keys(table)
                hours = every_hour
            hours = derivation.affected(path, hours, now)
            stale |= {h for h in hours if covered.get(h, -1) < version}
    return _Snapshot(inputs=inputs, output=output, stale=stale)


def _hour_results(built: Built, keys: Sequence[str]) -> list[HourResult]:
    counts: dict[str, int] = dict.fromkeys(keys, 0)
    if built.rows.num_rows:
        grouped = built.rows.group_by(["event_date", "event_hour"]).aggregate([([], "count_all")])
        for d, h, n in zip(
            grouped.column("event_date").to_pylist(),
            grouped.column("event_hour").to_pylist(),
            grouped.column("count_all").to_pylist(),
            strict=True,
        ):
            key = key_of(d, h)
            if key not in counts:
                raise ValueError(f"built a row for hour {key}, which was not being refreshed")
            counts[key] = int(n)
    return [HourResult(k, counts[k], dict(built.details.get(k, {}))) for k in keys]


def _commit(
    lake: Lake,
    derivation: Derivation,
    snap: _Snapshot,
    keys: list[str],
    built: Built,
    results: list[HourResult],
    complete: bool,
) -> int | None:
    """Step 4 and 5 of the protocol; the new output version, or None when it must restart."""
    if snap.output is None:
        output = ensure_table(
            lake, derivation.output, derivation.schema, BRONZE_PARTITION_BY, derivation.description
        )
        expected = 0  # only our (or a racer's) empty creation may have happened
    else:
        output = snap.output
        expected = output.version()
        if not set(derivation.schema.names) <= {f.name for f in output.schema().fields}:
            # The input gained a column (a contract change): add it, then start over.
            add_missing_columns(output, derivation.schema, lake.uri(derivation.output))
            return None
        output.update_incremental()
    if output.version() != expected:
        return None
    versions = snap.versions
    serial = serial_app_id(derivation.output)
    txns = [Transaction(serial, (output.transaction_version(serial) or 0) + 1)]
    if complete:
        txns += [
            Transaction(watermark_app_id(derivation.output, p), v) for p, v in versions.items()
        ]
    annotation = DeriveAnnotation(
        output=derivation.output,
        hours=keys,
        inputs=versions,
        complete=complete,
        rows=built.rows.num_rows,
        hour_rows={r.hour: r.rows for r in results},
    )
    faults = env_fault_injector()
    faults.hit("before_derive_commit")
    try:
        write_deltalake(
            output,
            built.rows,
            mode="overwrite",
            predicate=overwrite_predicate(keys),
            partition_by=list(BRONZE_PARTITION_BY),
            commit_properties=CommitProperties(
                custom_metadata=annotation.custom_metadata(), app_transactions=txns
            ),
        )
    except CommitFailedError as exc:
        log.info("%s: commit conflict (%s)", derivation.output, exc)
        return None
    faults.hit("after_derive_commit")
    return output.version()


__all__ = [
    "MAX_ATTEMPTS",
    "Builder",
    "Built",
    "Derivation",
    "RefreshConflictError",
    "read_hours",
    "refresh",
    "stale_hours",
]
