"""Gold layer: ``gold/events_per_minute`` and ``gold/events_per_hour``, hourly partitioned, with
their checks, and the freshness checks of every derived asset."""

from assets.gold.assets import (
    EVENTS_PER_HOUR_KEY,
    EVENTS_PER_MINUTE_KEY,
    GOLD_KEYS,
    build_gold_assets,
)
from assets.gold.checks import EVENTS_MATCH_SILVER
from assets.gold.freshness import (
    FRESH_WITHIN_SLA,
    FRESHNESS_CHECKS_NAME,
    Freshness,
    Staleness,
    build_freshness_checks,
    compute_freshness,
    freshness_evaluation,
    freshness_keys,
    read_staleness,
)

__all__ = [
    "EVENTS_MATCH_SILVER",
    "EVENTS_PER_HOUR_KEY",
    "EVENTS_PER_MINUTE_KEY",
    "FRESHNESS_CHECKS_NAME",
    "FRESH_WITHIN_SLA",
    "GOLD_KEYS",
    "Freshness",
    "Staleness",
    "build_freshness_checks",
    "build_gold_assets",
    "compute_freshness",
    "freshness_evaluation",
    "freshness_keys",
    "read_staleness",
]
