"""The text report of ``tidelake validate``, laid out with ``rich`` tables.

Plain text unless asked for color (a terminal): no ANSI codes end up in captured or piped output.
Sections: scope, per topic, silver, quarantine by reason, record problems, minutes, sample ids,
verdict.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tidelake.quality.reconcile.model import MinuteRow, ReconciliationReport, TopicSummary

SILVER_NOT_BUILT = "silver: not built yet (run `tidelake refresh`)"

# Wide enough that no table is ever squeezed or wrapped when no width is given: a squeezed table
# would cut event ids and minutes in half.
_NATURAL_WIDTH = 1000


def render_report(
    report: ReconciliationReport, *, per_minute: bool = False, color: bool = False, width: int = 0
) -> str:
    """The whole report as text (see :meth:`ReconciliationReport.render`)."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=color,
        color_system="standard" if color else None,
        width=width or _NATURAL_WIDTH,
        highlight=False,
        markup=False,
        emoji=False,
    )
    for block in _blocks(report, per_minute):
        console.print(block)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    return "\n".join(lines) + "\n"


def _blocks(report: ReconciliationReport, per_minute: bool) -> list[str | Table]:
    shown_topics = [t for t in report.topics if not t.ok or t.minutes or t.ledger_offsets]
    out: list[str | Table] = [*_header(report), "Per topic", _topic_table(shown_topics)]
    empty = [t.topic for t in report.topics if t not in shown_topics]
    if empty:
        out.append(f"  nothing in scope for: {', '.join(empty)}")
    out.append("")
    if any(t.other_runs for t in report.topics):
        other = ", ".join(f"{t.topic}={t.other_runs}" for t in report.topics if t.other_runs)
        out += [f"  ignored events of other runs in the same minutes: {other}", ""]
    out += _silver_blocks(shown_topics)
    if report.reasons:
        out += [
            "Quarantine by reason (expected from the ledger vs found in the lake)",
            _table(
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
            _table(
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
        out += [title, _minute_table(shown, report.silver_checked), ""]
    out += _samples(report)
    if not report.topics or not any(t.ledger_offsets or t.landed for t in report.topics):
        out.append("Nothing produced or landed in this scope.")
    bad = list(dict.fromkeys([t.topic for t in report.topics if not t.ok]))
    bad += [r.topic for r in report.reasons if not r.ok and r.topic not in bad]
    out.append("RESULT: OK" if report.ok else f"RESULT: MISMATCH in {', '.join(bad)}")
    return out


def _header(report: ReconciliationReport) -> list[str | Table]:
    s = report.scope
    since = s.since.isoformat() if s.since else "-inf"
    until = s.until.isoformat() if s.until else "+inf"
    return [
        "Tidelake reconciliation: producer ledger vs lake",
        f"  lake    {s.lake_uri or '(in memory)'}",
        f"  run     {s.run_id or 'all runs'}",
        f"  prefix  {s.topic_prefix!r}",
        f"  window  [{since}, {until}) on event_time (UTC)",
        "",
    ]


def _topic_table(topics: Sequence[TopicSummary]) -> Table:
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
        "malformed",
        "quarantined",
        "bad_quar",
        "offsets",
        "lost",
        "doubled",
        "status",
    ]
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
            t.malformed_expected,
            t.quarantined,
            t.not_quarantined + t.wrong_reason + t.unexpected_quarantine,
            t.ledger_offsets,
            t.lost_offsets,
            t.doubled_offsets,
            t.status,
        ]
        for t in topics
    ]
    return _table(headers, rows)


def _silver_blocks(topics: Sequence[TopicSummary]) -> list[str | Table]:
    """Silver per topic where built; the topics without a silver table, named once."""
    built = [t for t in topics if t.silver_built]
    not_built = [t.topic for t in topics if not t.silver_built]
    if not built:
        return [SILVER_NOT_BUILT, ""]
    out: list[str | Table] = [
        "Per topic in silver/<table>: each event once, vs the ledger and the distinct bronze ids",
        _table(
            [
                "topic",
                "events",
                "missing",
                "extra",
                "dup_ids",
                "not_in_bronze",
                "bronze_only",
                "status",
            ],
            [
                [
                    t.topic,
                    t.silver_events,
                    t.silver_missing,
                    t.silver_extra,
                    t.silver_duplicate_ids,
                    t.silver_not_in_bronze,
                    t.bronze_not_in_silver,
                    "OK" if t.silver_ok else "MISMATCH",
                ]
                for t in built
            ],
        ),
    ]
    if not_built:
        out.append(f"  {SILVER_NOT_BUILT}: {', '.join(not_built)}")
    return [*out, ""]


def _minute_table(minutes: Sequence[MinuteRow], silver: bool) -> Table:
    headers = [
        "topic",
        "minute (UTC)",
        "produced",
        "landed",
        "missing",
        "unexpected",
        "dup_sent",
        "dup_seen",
        "late",
        *(["silver", "s_missing", "s_extra", "s_dup_ids"] if silver else []),
        "status",
    ]
    rows = [
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
            *(
                [m.silver_events, m.silver_missing, m.silver_extra, m.silver_duplicate_ids]
                if silver
                else []
            ),
            m.status,
        ]
        for m in minutes
    ]
    return _table(headers, rows)


def _samples(report: ReconciliationReport) -> list[str | Table]:
    lines: list[str | Table] = []
    for t in report.topics:
        for label, total, ids in (
            ("missing", t.missing, t.missing_sample),
            ("unexpected", t.unexpected, t.unexpected_sample),
            ("missing from silver", t.silver_missing, t.silver_missing_sample),
            ("extra in silver", t.silver_extra, t.silver_extra_sample),
        ):
            if ids:
                lines.append(f"  {t.topic} {label} ({total}): {', '.join(ids)}")
    if not lines:
        return []
    return [f"Sample event_ids (first {report.sample_size})", *lines, ""]


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A borderless table: first column left-aligned, numeric columns right-aligned."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        numeric = i > 0 and all(isinstance(r[i], int) or r[i] is None for r in rows)
        table.add_column(header, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(_cell(v)) for v in row))
    return table


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)
