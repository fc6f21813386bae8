"""Test hooks that kill or fail the engine at named points of the commit protocol."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

FAULT_ENV = "TIDELAKE_FAULT_POINT"
FAULT_POINTS = (
    "after_consume",
    "before_quarantine_commit",
    "between_commits",
    "after_bronze_commit",
    "before_group_commit",
)


class FaultInjector:
    """Testing hook: ``TIDELAKE_FAULT_POINT=<point>:<n>`` SIGKILLs this process at the n-th hit.

    It lets the crash tests kill the engine exactly before, between and after the two Delta commits
    and before the consumer-group commit. Unset (the default), it does nothing.
    """

    def __init__(self, spec: str | None) -> None:
        self.point: str | None = None
        self.at = 1
        self.hits = 0
        if spec:
            point, _, n = spec.partition(":")
            if point not in FAULT_POINTS:
                raise ValueError(f"{FAULT_ENV}={spec!r}: point must be one of {FAULT_POINTS}")
            self.point, self.at = point, int(n or 1)

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self.hits += 1
        if self.hits >= self.at:
            log.warning("fault injection: SIGKILL at %s (hit %d)", point, self.hits)
            os.kill(os.getpid(), signal.SIGKILL)
