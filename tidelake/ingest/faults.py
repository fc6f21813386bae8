"""Named points of the commit protocol where tests kill or fail the engine.

Two mechanisms share the point names:

* :class:`FaultInjector`: ``TIDELAKE_FAULT_POINT=<point>:<n>`` SIGKILLs the process at the n-th
  hit of a :data:`KILL_POINTS` point, so the crash tests can kill ``tidelake ingest`` exactly
  before, between and after the two Delta commits. :class:`tidelake.settings.IngestSettings`
  accepts the variable only with ``TIDELAKE_ENV=test`` and no Dagster resource exposes it, so
  production settings cannot enable it.
* In-process tests replace ``IngestEngine.faults`` with any object that has ``hit(point)``
  (e.g. one that raises once), reaching every point of :data:`HOOK_POINTS`.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Protocol

log = logging.getLogger(__name__)

FAULT_ENV = "TIDELAKE_FAULT_POINT"
INGEST_KILL_POINTS = (
    "after_consume",
    "before_quarantine_commit",
    "between_commits",
    "after_bronze_commit",
    "before_group_commit",
)
"""Points of the ingest engine where ``TIDELAKE_FAULT_POINT`` can kill the process."""
DERIVE_KILL_POINTS = ("before_derive_commit", "after_derive_commit")
"""Points of a silver/gold refresh (:mod:`tidelake.layers.derive`), around its one commit."""
KILL_POINTS = INGEST_KILL_POINTS + DERIVE_KILL_POINTS
"""Every point where ``TIDELAKE_FAULT_POINT`` can kill the process."""
FAULT_POINTS = INGEST_KILL_POINTS
HOOK_POINTS = (
    "after_consume",
    "decode",
    "before_quarantine_commit",
    "between_commits",
    "before_bronze_commit",
    "after_bronze_commit",
    "before_group_commit",
)
"""Every point the engine reports to its fault hook, in the order a commit reaches them."""


class FaultHook(Protocol):
    def hit(self, point: str) -> None: ...


class FaultInjector:
    """``<point>:<n>``: SIGKILL this process at the n-th hit of ``point``. Unset: does nothing."""

    def __init__(self, spec: str | None) -> None:
        self.point: str | None = None
        self.at = 1
        self.hits = 0
        if spec:
            point, _, n = spec.partition(":")
            if point not in KILL_POINTS:
                raise ValueError(f"{FAULT_ENV}={spec!r}: point must be one of {KILL_POINTS}")
            self.point, self.at = point, int(n or 1)

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self.hits += 1
        if self.hits >= self.at:
            log.warning("fault injection: SIGKILL at %s (hit %d)", point, self.hits)
            os.kill(os.getpid(), signal.SIGKILL)


def env_fault_injector() -> FaultInjector:
    """The kill hook of ``TIDELAKE_FAULT_POINT`` for code without an engine (the derived
    layers): validated by :class:`tidelake.settings.IngestSettings`, so only ``TIDELAKE_ENV=test``
    honours it."""
    from tidelake.settings import IngestSettings

    return FaultInjector(IngestSettings.from_env().fault_point)
