"""What a simulator run should produce: rate, length, seed, and the share of each message kind."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from tidelake.contracts import TOPICS, QuarantineReason
from tidelake.ledger import ANOMALY_KINDS, FRAUD_RULES
from tidelake.settings import ConfigError

COMPRESSIONS: tuple[str, ...] = ("none", "gzip", "snappy", "lz4", "zstd")

MALFORMED_REASONS: tuple[QuarantineReason, ...] = tuple(
    r for r in QuarantineReason if r is not QuarantineReason.UNREPRESENTABLE
)
"""Every quarantine reason the simulator can provoke (one per malformed message): all but
``unrepresentable``, the decoder's catch-all for values no known rule catches."""


@dataclass(frozen=True)
class SimulatorConfig:
    """One simulator run. Validated on construction; invalid values raise ``ConfigError``.

    Each produced message is exactly one kind: malformed, late (held back ``late_min_seconds``
    to ``late_max_seconds`` after its event_time), very late (event_time hours in the past,
    recorded as kind ``late``), duplicate (an earlier message re-sent byte for byte) or on time.
    The four fractions are the probabilities of the first four kinds, so they must sum to <= 1.

    Args:
        rate: mean events per second (arrivals are bursty around this mean).
        duration: seconds of arrivals; ``None`` or ``0`` means until stopped.
        count: stop after this many messages (all kinds); with ``duration``, whichever is first.
        seed: makes the message sequence reproducible; ``None`` draws one (reported in the summary).
        late_fraction: share of messages held back and sent late.
        late_min_seconds: least delay of a late message after its event_time.
        late_max_seconds: greatest delay of a late message after its event_time.
        very_late_fraction: share of messages whose event_time lies hours in the past.
        very_late_min_seconds: least age of a very late message's event_time when sent.
        very_late_max_seconds: greatest age of a very late message's event_time when sent.
        duplicate_fraction: share of messages that re-send an earlier message (same bytes).
        malformed_fraction: share of deliberately broken messages.
        malformed_reasons: the quarantine reasons malformed messages are split across.
        topics: logical topics to produce (default: all of the contract).
        compression: producer ``compression.type``.
        max_rate: no pacing: event_time is the wall clock and messages go out as fast as possible.
        wait_late: at the end of a bounded run, wait for held-back messages' send time; if false
            they are flushed at once (still recorded as ``late``).
        write_ledger: append acknowledged messages to the producer ledger.
        ledger_flush_rows: flush the ledger once this many rows are pending.
        ledger_flush_seconds: flush the ledger at least this often while rows are pending.
        users: size of the shopper population.
        products: size of the product catalogue.
        devices: number of sensor devices.
        burst_every_seconds: mean calm time between traffic bursts (0 disables bursts).
        scenarios: mix labelled fraud and sensor-anomaly scenarios into the traffic (ledger
            ``label``). Paced and history runs only: ``max_rate`` stamps events with the wall
            clock, so no timing the rules depend on can be staged and scenarios are off there.
        fraud_every_purchases: mean normal purchase events between two fraud scenario starts.
        anomaly_every_readings: mean normal sensor readings between two anomaly segment starts.
        fraud_kinds: the fraud rules to stage scenarios for (drawn uniformly).
        anomaly_kinds: the sensor anomaly kinds to inject (drawn uniformly).
        history_days: > 0: back-fill instead of live traffic; the run's arrivals are spread over
            the ``history_days`` UTC days before ``start`` (one block of paced traffic a day from
            08:00 UTC), users have a first day and come back on later days with a decaying
            probability. Needs ``count`` or ``duration`` (then ``rate * duration`` arrivals).
    """

    rate: float = 50.0
    duration: float | None = 60.0
    count: int | None = None
    seed: int | None = None
    late_fraction: float = 0.10
    late_min_seconds: float = 30.0
    late_max_seconds: float = 60.0
    very_late_fraction: float = 0.0
    very_late_min_seconds: float = 3600.0
    very_late_max_seconds: float = 6 * 3600.0
    duplicate_fraction: float = 0.02
    malformed_fraction: float = 0.01
    malformed_reasons: tuple[QuarantineReason, ...] = MALFORMED_REASONS
    topics: tuple[str, ...] = field(default_factory=lambda: tuple(TOPICS))
    compression: str = "lz4"
    max_rate: bool = False
    wait_late: bool = True
    write_ledger: bool = True
    ledger_flush_rows: int = 50_000
    ledger_flush_seconds: float = 5.0
    users: int = 2_000
    products: int = 500
    devices: int = 40
    burst_every_seconds: float = 15.0
    scenarios: bool = True
    fraud_every_purchases: float = 100.0
    anomaly_every_readings: float = 600.0
    fraud_kinds: tuple[str, ...] = FRAUD_RULES
    anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS
    history_days: int = 0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def bounded(self) -> bool:
        """Whether the run ends on its own (a duration or a count)."""
        return bool(self.duration) or self.count is not None

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first unusable value and how to fix it."""
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ConfigError(f"rate={self.rate}: events per second must be a number > 0")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration >= 0):
            raise ConfigError(f"duration={self.duration}: seconds must be >= 0 (0 = until stopped)")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"count={self.count}: must be >= 1")
        fractions = {
            "late_fraction": self.late_fraction,
            "very_late_fraction": self.very_late_fraction,
            "duplicate_fraction": self.duplicate_fraction,
            "malformed_fraction": self.malformed_fraction,
        }
        for name, value in fractions.items():
            if not (0.0 <= value <= 1.0):
                raise ConfigError(f"{name}={value}: must be between 0 and 1")
        total = sum(fractions.values())
        if total > 1.0 + 1e-9:
            raise ConfigError(
                f"late + very late + duplicate + malformed fractions sum to {total:g}; "
                "each message has one kind, so the sum must be <= 1"
            )
        _check_range("late", self.late_min_seconds, self.late_max_seconds)
        _check_range("very_late", self.very_late_min_seconds, self.very_late_max_seconds)
        if self.malformed_fraction > 0 and not self.malformed_reasons:
            raise ConfigError("malformed_fraction > 0 needs at least one malformed reason")
        unknown = [t for t in self.topics if t not in TOPICS]
        if unknown or not self.topics:
            raise ConfigError(
                f"topics={','.join(self.topics) or '(none)'}: "
                f"choose one or more of {', '.join(TOPICS)}"
            )
        if self.compression not in COMPRESSIONS:
            raise ConfigError(
                f"compression={self.compression!r}: use one of {', '.join(COMPRESSIONS)}"
            )
        for name, minimum in (("users", 1), ("products", 1), ("devices", 1)):
            if getattr(self, name) < minimum:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= {minimum}")
        if self.ledger_flush_rows < 1 or self.ledger_flush_seconds <= 0:
            raise ConfigError("ledger_flush_rows must be >= 1 and ledger_flush_seconds > 0")
        if self.burst_every_seconds < 0:
            raise ConfigError("burst_every_seconds must be >= 0 (0 disables bursts)")
        self._validate_scenarios()

    def _validate_scenarios(self) -> None:
        for name in ("fraud_every_purchases", "anomaly_every_readings"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 1):
                raise ConfigError(f"{name}={value}: must be a number >= 1")
        for name, known in (("fraud_kinds", FRAUD_RULES), ("anomaly_kinds", ANOMALY_KINDS)):
            bad = [k for k in getattr(self, name) if k not in known]
            if bad:
                raise ConfigError(f"{name}={','.join(bad)}: choose from {', '.join(known)}")
        if self.history_days < 0:
            raise ConfigError(f"history_days={self.history_days}: must be >= 0 (0 = live)")
        if self.history_days:
            if self.max_rate:
                raise ConfigError("history_days cannot be combined with max_rate")
            if not self.bounded:
                raise ConfigError("history_days needs a count or a duration > 0")

    @classmethod
    def bulk(cls, count: int, *, seed: int | None = 0, **overrides: object) -> SimulatorConfig:
        """Benchmark preset: exactly ``count`` valid on-time messages, unpaced, nothing broken."""
        base = cls(
            count=count,
            duration=None,
            seed=seed,
            max_rate=True,
            late_fraction=0.0,
            very_late_fraction=0.0,
            duplicate_fraction=0.0,
            malformed_fraction=0.0,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]


def _check_range(name: str, low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise ConfigError(
            f"{name}_min_seconds={low}, {name}_max_seconds={high}: need 0 <= min <= max"
        )
