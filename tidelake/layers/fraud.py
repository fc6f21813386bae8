"""``gold/fraud_flags``: the fraud rules over silver, refreshed by stale hour like every derived
table.

An hour of flags is :func:`tidelake.transform.fraud.fraud_flags` over that hour's purchases with
their context: the purchases of the rules' longest look-back before it (``high_value``'s trailing
24 h median), and the page views and clicks of the browse window before it. Cross-topic
dependencies are declared on the derivation (:class:`tidelake.layers.derive.Derivation`):

* a purchase hour H changes the flags of H and of the 24 hours after (every window rule and the
  trailing median look back at most that far), never past the open hour;
* a page-view or click hour H changes the flags of H and H+1 (a view at 10:50 decides purchases
  until 11:20): a late page view re-evaluates exactly the purchases it precedes.

Thresholds come from ``TIDELAKE_FRAUD_*`` (:class:`tidelake.transform.fraud.FraudThresholds`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa

from tidelake.contracts import TOPICS
from tidelake.lake import Lake
from tidelake.layers.derive import Built, Derivation, refresh, stale_hours
from tidelake.layers.hours import key_of
from tidelake.layers.result import RefreshResult, StaleHours
from tidelake.settings import RefreshSettings
from tidelake.transform.fraud import (
    BROWSE_COLUMNS,
    FRAUD_FLAGS_SCHEMA,
    FRAUD_RULES,
    PURCHASE_COLUMNS,
    FraudThresholds,
    browse_context,
    context_window,
    fraud_flags,
)
from tidelake.transform.windows import to_arrow

FRAUD_FLAGS_PATH = "gold/fraud_flags"
PURCHASES = TOPICS["shop.purchases"]
PAGE_VIEWS = TOPICS["shop.page_views"]
CLICKS = TOPICS["shop.clicks"]


def _hours(window: timedelta) -> int:
    """Whole hours before an hour that a look-back of ``window`` can reach into."""
    return max(1, math.ceil(window / timedelta(hours=1)))


def fraud_derivation(thresholds: FraudThresholds | None = None) -> Derivation:
    """The derivation of ``gold/fraud_flags`` (module docstring)."""
    rules = thresholds or FraudThresholds()
    purchase_hours = _hours(context_window(rules))
    browse_hours = _hours(browse_context(rules))
    browse_columns = tuple(BROWSE_COLUMNS)

    def build(inputs: Mapping[str, pa.Table], keys: Sequence[str]) -> Built:
        def frame(path: str) -> pl.DataFrame:
            table = inputs.get(path)
            return pl.DataFrame() if table is None else pl.DataFrame(pl.from_arrow(table))

        flags = fraud_flags(
            frame(PURCHASES.silver_path),
            frame(PAGE_VIEWS.silver_path),
            frame(CLICKS.silver_path),
            hours=keys,
            thresholds=rules,
            detected_at=datetime.now(UTC),
        )
        details = _details(flags, keys)
        return Built(to_arrow(flags, FRAUD_FLAGS_SCHEMA), details)

    return Derivation(
        output=FRAUD_FLAGS_PATH,
        inputs=(PURCHASES.silver_path, PAGE_VIEWS.silver_path, CLICKS.silver_path),
        schema=FRAUD_FLAGS_SCHEMA,
        description=(
            "One row per (purchase event, fraud rule that flagged it), with the rule's score and "
            "a reason naming the figures; hour partitions of the purchase's event_time."
        ),
        build=build,
        context_hours={
            PURCHASES.silver_path: purchase_hours,
            PAGE_VIEWS.silver_path: browse_hours,
            CLICKS.silver_path: browse_hours,
        },
        affects_hours={
            PURCHASES.silver_path: purchase_hours,
            PAGE_VIEWS.silver_path: browse_hours,
            CLICKS.silver_path: browse_hours,
        },
        input_columns={
            PURCHASES.silver_path: (*PURCHASE_COLUMNS, "event_type"),
            PAGE_VIEWS.silver_path: browse_columns,
            CLICKS.silver_path: browse_columns,
        },
    )


def _details(flags: pl.DataFrame, keys: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per hour: flags per rule (``flags_<rule>``, every rule present, 0 when none)."""
    out = {k: {f"flags_{r}": 0 for r in FRAUD_RULES} for k in keys}
    if flags.height:
        counts = flags.group_by("event_date", "event_hour", "rule").len()
        for day, hour, rule, n in counts.iter_rows():
            key = key_of(day, int(hour))
            if key in out:
                out[key][f"flags_{rule}"] = int(n)
    return out


def stale_fraud_hours(
    lake: Lake, thresholds: FraudThresholds | None = None, now: datetime | None = None
) -> StaleHours:
    """Hours of ``gold/fraud_flags`` whose purchases, page views or clicks changed (as of
    ``now``, which bounds how far a touched hour's effect reaches)."""
    return stale_hours(lake, fraud_derivation(thresholds), now)


def refresh_fraud_flags(
    lake: Lake,
    hours: Collection[str] | None = None,
    *,
    settings: RefreshSettings,
    thresholds: FraudThresholds | None = None,
    now: datetime | None = None,
    max_hours: int | None = None,
) -> RefreshResult:
    """Recompute the stale hours of ``gold/fraud_flags`` in one commit (see
    :func:`tidelake.layers.derive.refresh`). Details per hour: ``flags_<rule>``."""
    return refresh(lake, fraud_derivation(thresholds), hours, settings, now, max_hours)


__all__ = [
    "FRAUD_FLAGS_PATH",
    "fraud_derivation",
    "refresh_fraud_flags",
    "stale_fraud_hours",
]
