"""The producer ledger: what the simulator (or the HTTP API) says it delivered to Kafka.

``_ledger/produced`` is a Delta table with one row per message the broker acknowledged. It is the
producer's side of the reconciliation: per (topic, minute of event_time), the distinct ``event_id``s
of kinds ``on_time``/``late``/``duplicate`` must all land in bronze (and in silver once each);
``malformed`` rows must each be matched by a quarantine record.
"""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa

LEDGER_PATH = "_ledger/produced"


class LedgerKind(StrEnum):
    """How a message was produced."""

    ON_TIME = "on_time"
    """Sent promptly after its event_time."""
    LATE = "late"
    """Held back and sent well after its event_time (30-60 s by default, or hours)."""
    DUPLICATE = "duplicate"
    """A producer-style re-send of an event already sent: same event_id, new offset."""
    MALFORMED = "malformed"
    """Deliberately broken; must end up in quarantine with ``expected_error``."""


LEDGER_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("event_id", pa.string(), nullable=True),
        pa.field("event_type", pa.string(), nullable=True),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=True),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("expected_error", pa.string(), nullable=True),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("produced_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("label", pa.string(), nullable=True),
    ]
)
"""Schema of ``_ledger/produced``.

- ``topic`` is the logical topic name (``shop.purchases``), without any environment prefix.
- ``event_id``/``event_type``/``event_time`` are null only for malformed messages that lack them.
- ``expected_error`` is the :class:`tidelake.contracts.QuarantineReason` value a malformed message
  must be quarantined with; null otherwise.
- ``partition``/``offset`` are the Kafka coordinates from the delivery report.
- ``produced_at`` is when the broker acknowledged the message.
- ``label`` is the simulator's ground truth for the fraud and anomaly detectors: null for normal
  traffic, ``fraud:<rule>`` on exactly the purchase events that fraud rule must flag,
  ``anomaly:<kind>`` on the sensor readings of an injected anomaly (see :data:`FRAUD_LABELS` and
  :data:`ANOMALY_LABELS`). Ledgers written before the column existed lack it; appends merge it in.
"""

FRAUD_RULES: tuple[str, ...] = (
    "velocity",
    "ip_sharing",
    "payment_hopping",
    "high_value",
    "purchase_without_browsing",
    "rapid_checkout",
)
"""The fraud rules the simulator stages scenarios for (the rule ids of ``gold/fraud_flags``)."""
ANOMALY_KINDS: tuple[str, ...] = ("spike", "level_shift", "stuck", "drift")
"""The sensor anomalies the simulator injects."""
FRAUD_LABELS: tuple[str, ...] = tuple(f"fraud:{r}" for r in FRAUD_RULES)
ANOMALY_LABELS: tuple[str, ...] = tuple(f"anomaly:{k}" for k in ANOMALY_KINDS)
