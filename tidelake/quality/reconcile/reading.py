"""Reading the lake for a reconciliation: the ledger, bronze, quarantine and silver tables.

:func:`reconcile` reads only the needed columns, pruned to the scope's event-time window, then
calls the pure :func:`~tidelake.quality.reconcile.comparison.compare`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads

from tidelake.contracts import QUARANTINE_PATH, TOPICS
from tidelake.lake import Lake
from tidelake.ledger import LEDGER_PATH
from tidelake.quality.reconcile.comparison import compare
from tidelake.quality.reconcile.frames import (
    BRONZE_FRAME_SCHEMA,
    LEDGER_COLUMNS,
    SILVER_FRAME_SCHEMA,
    bronze_frame,
    quarantine_frame,
    silver_frame,
    silver_path,
    utc,
)
from tidelake.quality.reconcile.model import (
    DEFAULT_SAMPLE_SIZE,
    ReconciliationReport,
    Scope,
    ScopeError,
)

log = logging.getLogger(__name__)

_BRONZE_COLUMNS = ("_topic", "_partition", "_offset", "event_id", "event_time")
_SILVER_COLUMNS = ("_topic", "event_id", "event_time")
_QUARANTINE_COLUMNS = ("_topic", "_partition", "_offset", "error")


def read_table(
    lake: Lake, relative: str, columns: Sequence[str], filter_: pads.Expression | None = None
) -> pa.Table | None:
    """``columns`` of the rows matching ``filter_``, or ``None`` if the table does not exist.

    Columns the table lacks are skipped (a silver table written before a column existed).
    """
    table = lake.open(relative)
    if table is None:
        return None
    present = {f.name for f in table.schema().fields}
    return table.to_pyarrow_table(columns=[c for c in columns if c in present], filters=filter_)


def time_filter(lo: datetime | None, hi: datetime | None) -> pads.Expression | None:
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
    """Read the ledger, bronze, quarantine (and silver, where built) and :func:`compare` them.

    Only the needed columns are read. Bronze and silver are pruned to the window, or with
    ``run_id`` and no window to the run's event-time range, so a scoped check on a long-lived
    lake stays cheap. A topic whose ``silver/<table>`` does not exist is reported as not built,
    never as a mismatch.

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
    since, until = utc(since), utc(until)
    topic_list = tuple(dict.fromkeys(topics)) if topics else tuple(TOPICS)
    unknown = [t for t in topic_list if t not in TOPICS]
    if unknown:
        raise ScopeError(f"unknown topic(s) {unknown}; known: {', '.join(TOPICS)}")
    ledger = _read_ledger(lake, topic_list)
    lo, hi = _read_window(ledger, run_id, topic_list, since, until)
    rows = time_filter(lo, hi)
    bronze_parts: list[pl.DataFrame] = []
    silver_parts: list[pl.DataFrame] = []
    silver_topics: list[str] = []
    for name in topic_list:
        contract = TOPICS[name]
        raw = read_table(lake, contract.bronze_path, _BRONZE_COLUMNS, rows)
        if raw is not None:
            bronze_parts.append(bronze_frame(raw, contract, topic_prefix))
        silver_raw = read_table(lake, silver_path(contract), _SILVER_COLUMNS, rows)
        if silver_raw is not None:
            silver_topics.append(name)
            silver_parts.append(silver_frame(silver_raw, contract, topic_prefix))
    bronze = pl.concat(bronze_parts) if bronze_parts else pl.DataFrame(schema=BRONZE_FRAME_SCHEMA)
    silver = pl.concat(silver_parts) if silver_parts else pl.DataFrame(schema=SILVER_FRAME_SCHEMA)
    physical = [TOPICS[t].physical_topic(topic_prefix) for t in topic_list]
    quarantine_raw = read_table(
        lake, QUARANTINE_PATH, _QUARANTINE_COLUMNS, pads.field("_topic").isin(physical)
    )
    quarantine = (
        quarantine_frame(quarantine_raw, topic_prefix, topic_list)
        if quarantine_raw is not None
        else None
    )
    log.debug(
        "reconcile: %d ledger rows, %d bronze rows, %d silver rows, %d quarantine rows",
        ledger.height,
        bronze.height,
        silver.height,
        0 if quarantine is None else quarantine.height,
    )
    return compare(
        ledger,
        bronze,
        quarantine,
        silver=silver,
        silver_topics=silver_topics,
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


def _read_ledger(lake: Lake, topics: Sequence[str]) -> pl.DataFrame:
    table = lake.open(LEDGER_PATH)
    if table is None:
        raise ScopeError(
            f"no producer ledger at {lake.uri(LEDGER_PATH)}; run `tidelake simulate` first"
        )
    arrow = table.to_pyarrow_table(
        columns=list(LEDGER_COLUMNS), filters=pads.field("topic").isin(list(topics))
    )
    return pl.DataFrame(pl.from_arrow(arrow))


def _read_window(
    ledger: pl.DataFrame,
    run_id: str | None,
    topics: Sequence[str],
    since: datetime | None,
    until: datetime | None,
) -> tuple[datetime | None, datetime | None]:
    """The event-time range to read from the lake: the window, or the run's whole minutes."""
    if run_id is None:
        return since, until
    run_rows = ledger.filter(pl.col("run_id") == run_id)
    if run_rows.is_empty():
        raise ScopeError(f"no ledger rows for run {run_id!r} on topics {list(topics)}")
    if since is not None or until is not None:
        return since, until
    times = run_rows.get_column("event_time").drop_nulls()
    if not times.len():
        return None, None
    # Whole minutes, so a run's first and last minutes are examined in full.
    first = _as_datetime(times.min()).replace(second=0, microsecond=0)
    last = _as_datetime(times.max()).replace(second=0, microsecond=0)
    return first, last + timedelta(minutes=1)


def _as_datetime(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value
