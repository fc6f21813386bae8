"""History mode: back-filled traffic over the past N days, with users coming back day after day.

The run's arrivals are split evenly over the ``N`` UTC days before the run's start (oldest
first). Each day is one block of ordinary paced traffic starting at 08:00 UTC, so sessions,
scenarios and late/duplicate/malformed messages behave exactly as in a live run; only the clock
jumps between blocks (and never goes back: a block that overruns its day delays the next one).

Who shops on a day follows a retention curve: the population is split into ``N`` cohorts by
first day; a user of cohort ``f`` is active on day ``d > f`` with probability
``RETURN_FIRST * RETURN_DECAY ** (d - f - 1)``. That gives ``gold/cohort_retention`` a falling
curve to measure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DAY_SECONDS = 86_400
BLOCK_START_SECONDS = 8 * 3600
RETURN_FIRST = 0.45
"""Share of a cohort active the day after its first day."""
RETURN_DECAY = 0.7
"""Each further day keeps this share of the previous day's return probability."""


@dataclass(frozen=True)
class HistoryPlan:
    """The days of a history run.

    Attributes:
        block_starts: epoch seconds where each day's block of traffic starts (oldest first).
        quotas: arrivals of each day (they sum to the run's arrivals).
        active_users: indices of the users active on each day (first-timers and returners).
        first_day: each user's first day (index into the days).
    """

    block_starts: tuple[float, ...]
    quotas: tuple[int, ...]
    active_users: tuple[tuple[int, ...], ...]
    first_day: tuple[int, ...]


def plan_history(
    rng: random.Random, *, start: float, days: int, arrivals: int, users: int
) -> HistoryPlan:
    """Plan ``days`` days of back-filled traffic ending before the UTC day of ``start``."""
    today = int(start // DAY_SECONDS) * DAY_SECONDS
    block_starts = tuple(
        float(today - (days - k) * DAY_SECONDS + BLOCK_START_SECONDS) for k in range(days)
    )
    base, extra = divmod(arrivals, days)
    quotas = tuple(base + (1 if k < extra else 0) for k in range(days))
    # Cohorts by first day; the popular users (low index) spread over all cohorts.
    first_day = tuple(rng.randrange(days) for _ in range(users))
    active: list[tuple[int, ...]] = []
    for d in range(days):
        today_users = []
        for u, f in enumerate(first_day):
            if f == d or (f < d and rng.random() < RETURN_FIRST * RETURN_DECAY ** (d - f - 1)):
                today_users.append(u)
        active.append(tuple(today_users))
    return HistoryPlan(block_starts, quotas, tuple(active), first_day)
