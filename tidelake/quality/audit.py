"""The whole-table audit of the bronze tables: the three bronze checks without a window.

After every ingestion run the bronze checks look only at what that batch added (O(batch)), so a
gap or a duplicate is reported once, by the run that made it, and never again. The audit runs the
same rules (:mod:`tidelake.quality.bronze`) over every row of a topic's bronze table together
with quarantine and every commit annotation (O(history)), so an old problem keeps being reported
until it is repaired or accepted (``tidelake ingest --accept-gap``). ``tidelake audit`` and the
daily Dagster job ``bronze_audit`` both run it; neither needs Kafka (positions are in the Delta
log, and the consumer group and topic prefix only name them).

:func:`audit_bronze` returns an :class:`AuditReport`: one :class:`CheckAudit` per topic and
check, each with the check's outcome, its headline figures and the offending items it lists.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidelake.contracts import TOPICS, TopicContract
from tidelake.lake import Lake
from tidelake.quality.bronze import (
    CheckOutcome,
    check_bronze_schema,
    check_offsets_contiguous,
    check_unique_coordinates,
)
from tidelake.quality.outcome import count
from tidelake.settings import KafkaSettings

logger = logging.getLogger(__name__)

UNIQUE_COORDINATES = "unique_kafka_coordinates"
CONTIGUOUS_OFFSETS = "contiguous_offsets"
CONTRACT_SCHEMA = "contract_schema"
AUDIT_CHECKS: tuple[str, ...] = (UNIQUE_COORDINATES, CONTIGUOUS_OFFSETS, CONTRACT_SCHEMA)
"""The checks an audit runs per topic, by the names the per-batch asset checks carry."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

FIGURES: dict[str, tuple[str, ...]] = {
    UNIQUE_COORDINATES: ("rows", "duplicate_coordinates", "extra_rows"),
    CONTIGUOUS_OFFSETS: (
        "rows",
        "partitions",
        "missing_offsets",
        "gaps",
        "skipped_offsets",
        "accepted_gap_offsets",
        "in_both_tables",
        "ahead_of_position",
    ),
    CONTRACT_SCHEMA: ("rows", "schema_failures"),
}
"""The headline figures of each check, in the order an audit line prints them."""

ALWAYS_SHOWN = frozenset(
    {
        "rows",
        "partitions",
        "duplicate_coordinates",
        "missing_offsets",
        "skipped_offsets",
        "accepted_gap_offsets",
        "schema_failures",
    }
)
"""Figures an audit line prints even when 0; the others only when they are not (JSON has all)."""


class AuditUsageError(ValueError):
    """The audit was asked for something that does not exist (e.g. an unknown topic)."""


def contracts_named(names: Sequence[str] | None) -> list[TopicContract]:
    """The contracts of the logical topic ``names`` (all topics when None or empty).

    Raises:
        AuditUsageError: a name is not a topic of the contract; the message lists the valid ones.
    """
    if not names:
        return list(TOPICS.values())
    unknown = [n for n in names if n not in TOPICS]
    if unknown:
        raise AuditUsageError(
            f"unknown topic(s) {', '.join(unknown)}; valid topics: {', '.join(sorted(TOPICS))}"
        )
    return [TOPICS[n] for n in dict.fromkeys(names)]


def figures(check: str, metadata: Mapping[str, Any]) -> dict[str, int]:
    """The headline figures of one check outcome's ``metadata`` (see :data:`FIGURES`).

    ``rows`` is what the check covered: bronze rows for the coordinate check, bronze plus
    quarantine rows of the topic for contiguity, validated rows for the schema; a figure the
    outcome does not carry (a table that does not exist yet) is 0.
    """
    rows = {
        UNIQUE_COORDINATES: int(metadata.get("rows", 0)),
        CONTIGUOUS_OFFSETS: int(metadata.get("bronze_rows", 0))
        + int(metadata.get("quarantine_rows", 0)),
        CONTRACT_SCHEMA: int(metadata.get("rows_validated", 0)),
    }[check]
    named = {"rows": rows, "schema_failures": int(metadata.get("failures", 0))}
    return {n: named[n] if n in named else int(metadata.get(n, 0)) for n in FIGURES[check]}


def _offsets(first: int | None, last: int) -> str:
    if first is None:
        return f"offsets up to {last} (no earlier offset accounted for)"
    return f"offset {first}" if first == last else f"offsets {first}-{last}"


def problems(metadata: Mapping[str, Any]) -> list[str]:
    """The offending items a failed outcome lists, as phrases naming partition and offsets.

    Each check lists at most :data:`tidelake.quality.outcome.MAX_LISTED` items per kind; the
    figures count all of them.
    """
    out = [
        f"partition {g['_partition']} {_offsets(g['first_missing'], g['last_missing'])} missing"
        for g in metadata.get("gap_examples", [])
    ]
    out += [
        f"partition {p} offset {o} (before the window) missing"
        for p, o in metadata.get("boundary_missing", {}).items()
    ]
    out += [
        f"partition {b['_partition']} offset {b['_offset']} in both bronze and quarantine"
        for b in metadata.get("both_examples", [])
    ]
    out += [
        f"partition {a['_partition']} offset {a['_offset']} at or past the stored position"
        for a in metadata.get("ahead_examples", [])
    ]
    out += [
        f"partition {d['_partition']} offset {d['_offset']} written {d['count']} times"
        for d in metadata.get("examples", [])
    ]
    out += [
        f"column {f.get('column')}: {f.get('check')} (value {f.get('failure_case')})"
        for f in metadata.get("failure_examples", [])
    ]
    return out


@dataclass
class CheckAudit:
    """One check of one topic's bronze table, over the whole table."""

    topic: str
    physical_topic: str
    table: str
    check: str
    outcome: CheckOutcome

    @property
    def passed(self) -> bool:
        return self.outcome.passed

    def figures(self) -> dict[str, int]:
        return figures(self.check, self.outcome.metadata)

    def line(self) -> str:
        """``topic  check  ok|FAIL  figure=value ...  - description[: problems]``."""
        shown = " ".join(f"{k}={v}" for k, v in self.figures().items() if v or k in ALWAYS_SHOWN)
        listed = problems(self.outcome.metadata) if not self.passed else []
        detail = self.outcome.description + (f": {'; '.join(listed)}" if listed else "")
        status = "ok  " if self.passed else "FAIL"
        return f"{self.topic:<22} {self.check:<25} {status}  {shown}  - {detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "physical_topic": self.physical_topic,
            "table": self.table,
            "check": self.check,
            "passed": self.passed,
            "description": self.outcome.description,
            "figures": self.figures(),
            "problems": problems(self.outcome.metadata) if not self.passed else [],
            "metadata": self.outcome.metadata,
        }


@dataclass
class AuditReport:
    """Every check of an audit; passed when all of them passed."""

    lake: str
    checks: list[CheckAudit] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckAudit]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_FAILED

    def render(self) -> str:
        topics = len({c.topic for c in self.checks})
        verdict = "all passed" if self.passed else f"{len(self.failed)} failed"
        head = (
            f"bronze audit of {self.lake}: {count(topics, 'topic')}, "
            f"{count(len(self.checks), 'check')}, {verdict}"
        )
        return "\n".join([head, *(c.line() for c in self.checks)]) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "lake": self.lake,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "failed": len(self.failed),
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_json(self) -> str:
        # Outcome metadata holds dates and other values json cannot encode natively.
        return json.dumps(self.to_dict(), sort_keys=True, default=str)


AuditCheck = Callable[[Lake, TopicContract, KafkaSettings], CheckOutcome]
"""One whole-table check of one topic."""

WHOLE_TABLE_CHECKS: dict[str, AuditCheck] = {
    UNIQUE_COORDINATES: lambda lake, contract, _: check_unique_coordinates(lake, contract),
    CONTIGUOUS_OFFSETS: check_offsets_contiguous,
    CONTRACT_SCHEMA: lambda lake, contract, _: check_bronze_schema(lake, contract),
}
"""Each audit check in whole-table mode (``window=None``)."""


def audit_bronze(
    lake: Lake,
    kafka: KafkaSettings,
    contracts: Iterable[TopicContract] | None = None,
    checks: Sequence[str] = AUDIT_CHECKS,
) -> AuditReport:
    """Run ``checks`` over the whole bronze table (with quarantine) of every topic in ``contracts``
    (default: all). A table that does not exist yet passes (nothing ingested, nothing lost).

    A check that raises (an unreadable table, storage unreachable) is reported as failed with
    the error, and the other checks and topics still run: an audit should show every problem.
    """
    report = AuditReport(lake.root)
    for contract in contracts if contracts is not None else TOPICS.values():
        for name in checks:
            try:
                outcome = WHOLE_TABLE_CHECKS[name](lake, contract, kafka)
            except Exception as exc:
                logger.exception("audit of %s %s could not run", contract.name, name)
                outcome = CheckOutcome(
                    False,
                    f"the check could not run: {type(exc).__name__}: {exc}",
                    {"error": f"{type(exc).__name__}: {exc}"},
                )
            report.checks.append(
                CheckAudit(
                    contract.name,
                    contract.physical_topic(kafka.topic_prefix),
                    contract.bronze_path,
                    name,
                    outcome,
                )
            )
    return report
