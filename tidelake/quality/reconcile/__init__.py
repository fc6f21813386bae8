"""Reconciliation (``tidelake validate``): the producer ledger against what landed in the lake.

The producer ledger (``_ledger/produced``, :mod:`tidelake.ledger`) says what the broker
acknowledged; bronze, quarantine and silver say what the pipeline made of it. This package
compares them:

- per (topic, UTC minute of ``event_time``): produced distinct ``event_id``s vs landed distinct
  ``event_id``s in bronze, the missing and unexpected ids (with samples), duplicate deliveries sent
  by the producer and duplicate rows seen in bronze (which silver removes);
- per (topic, minute), where ``silver/<table>`` is built: silver events vs the produced ids
  (missing, extra), silver ids held more than once, and silver vs the distinct bronze ids;
- per topic: quarantine counts by reason vs the malformed messages the ledger expected, every
  malformed message matched by its Kafka coordinates, and coverage: every ledger
  (partition, offset) is in exactly one of bronze or quarantine.

Where things are: :mod:`~tidelake.quality.reconcile.model` the report dataclasses,
:mod:`~tidelake.quality.reconcile.frames` the input frames and their normalization,
:mod:`~tidelake.quality.reconcile.comparison` the pure :func:`compare` (frames in, report out),
:mod:`~tidelake.quality.reconcile.coverage` its Kafka-coordinate half,
:mod:`~tidelake.quality.reconcile.reading` :func:`reconcile` (reads the lake, calls
:func:`compare`), :mod:`~tidelake.quality.reconcile.render` the text report.
:mod:`tidelake.cli.validate` is the ``validate`` subcommand. Nothing here imports Dagster, so asset
checks can call :func:`reconcile` and turn :attr:`ReconciliationReport.ok` into a check result.
"""

from tidelake.quality.reconcile.comparison import compare
from tidelake.quality.reconcile.frames import (
    BRONZE_FRAME_SCHEMA,
    EVENT_KINDS,
    LEDGER_COLUMNS,
    LEDGER_FRAME_SCHEMA,
    QUARANTINE_FRAME_SCHEMA,
    SILVER_FRAME_SCHEMA,
    SILVER_PREFIX,
    FrameLike,
    bronze_frame,
    quarantine_frame,
    silver_frame,
    silver_path,
)
from tidelake.quality.reconcile.model import (
    DEFAULT_SAMPLE_SIZE,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_USAGE,
    MinuteRow,
    ReasonCount,
    ReconciliationReport,
    RecordIssue,
    Scope,
    ScopeError,
    TopicSummary,
)
from tidelake.quality.reconcile.reading import reconcile
from tidelake.quality.reconcile.render import SILVER_NOT_BUILT

__all__ = [
    "BRONZE_FRAME_SCHEMA",
    "DEFAULT_SAMPLE_SIZE",
    "EVENT_KINDS",
    "EXIT_MISMATCH",
    "EXIT_OK",
    "EXIT_USAGE",
    "LEDGER_COLUMNS",
    "LEDGER_FRAME_SCHEMA",
    "QUARANTINE_FRAME_SCHEMA",
    "SILVER_FRAME_SCHEMA",
    "SILVER_NOT_BUILT",
    "SILVER_PREFIX",
    "FrameLike",
    "MinuteRow",
    "ReasonCount",
    "ReconciliationReport",
    "RecordIssue",
    "Scope",
    "ScopeError",
    "TopicSummary",
    "bronze_frame",
    "compare",
    "quarantine_frame",
    "reconcile",
    "silver_frame",
    "silver_path",
]
