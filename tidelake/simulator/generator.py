"""The pure event generator: a seed and a clock in, planned Kafka messages out. No Kafka here.

:class:`EventSimulator` yields :class:`PlannedMessage` objects in the order they are to be sent
(non-decreasing ``send_at``). Paced runs live on a simulated timeline that starts at ``start``:
arrivals are a Poisson process whose rate switches between calm and short bursts, so the same
seed and start give byte-identical messages. Unpaced (``max_rate``) runs stamp each event with
the injected clock and leave the pace to the caller. History runs (``history_days``) put the
timeline in the past (:mod:`tidelake.simulator.history`), so their messages are due at once.

Paced and history runs mix in labelled scenarios (:mod:`tidelake.simulator.scenarios` for fraud,
:mod:`tidelake.simulator.sensors` for anomalies); a message's ``label`` is its ledger label.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from tidelake.contracts import TOPICS, QuarantineReason
from tidelake.ledger import LedgerKind
from tidelake.settings import ConfigError, IngestSettings
from tidelake.simulator.config import SimulatorConfig
from tidelake.simulator.entities import APP, PURCHASES, SENSORS, WEB_TOPICS, Event
from tidelake.simulator.history import HistoryPlan, plan_history
from tidelake.simulator.malformed import break_record, topics_for_reason
from tidelake.simulator.scenarios import FraudScenarios
from tidelake.simulator.sensors import AnomalyInjector
from tidelake.simulator.timestamps import MsFormatter, ms_to_datetime
from tidelake.simulator.world import World

ON_TIME = LedgerKind.ON_TIME
LATE = LedgerKind.LATE
DUPLICATE = LedgerKind.DUPLICATE
MALFORMED = LedgerKind.MALFORMED

_SOURCE_WEIGHTS = {"web": 0.60, "app": 0.25, "sensor": 0.15}
_RECENT_FOR_DUPLICATES = 256
# A producer retry re-sends something it sent moments ago, not an hour ago.
_DUPLICATE_LOOKBACK = 64
# Bursts: calm stretches of exp(burst_every) seconds, then 1-5 s at 2-4x the calm rate.
_BURST_SECONDS = (1.0, 5.0)
_BURST_FACTOR = (2.0, 4.0)
_MAX_SKIPS = 100_000


@dataclass(slots=True)
class PlannedMessage:
    """One message to send, and its ledger row except the Kafka coordinates.

    Attributes:
        topic: logical topic (the contract name, without environment prefix).
        key: Kafka key: the contract ``key_field`` value as UTF-8.
        value: the exact bytes to send.
        kind: on_time, late, duplicate or malformed.
        expected_error: the quarantine reason a malformed message must get; else ``None``.
        event_id: the envelope ``event_id``, if the message has a meaningful one.
        event_type: the envelope ``event_type``, if the message has one.
        event_time_ms: ``event_time`` in epoch milliseconds, if the message has a parseable one.
        send_at: when to send (epoch seconds); ``received_time`` in the payload says the same.
        label: the ledger ``label``: ``fraud:<rule>`` / ``anomaly:<kind>`` on scenario events
            a detector must flag, ``None`` for normal traffic (duplicates keep the original's).
    """

    topic: str
    key: bytes | None
    value: bytes
    kind: LedgerKind
    expected_error: QuarantineReason | None
    event_id: str | None
    event_type: str | None
    event_time_ms: int | None
    send_at: float
    label: str | None = None

    @property
    def event_time(self) -> datetime | None:
        """``event_time`` as an aware UTC datetime (``None`` if the message has none)."""
        return None if self.event_time_ms is None else ms_to_datetime(self.event_time_ms)


@dataclass(slots=True)
class _Held:
    """A late message waiting for its send time; serialized only when released."""

    topic: str
    record: dict[str, Any]
    key: bytes
    event_time_ms: int
    label: str | None


def _web_share(selected: frozenset[str]) -> float:
    """The share of arrivals that are web events, given the selected topics."""
    on = {
        "web": bool(selected & WEB_TOPICS),
        "app": APP in selected,
        "sensor": SENSORS in selected,
    }
    total = sum(w for source, w in _SOURCE_WEIGHTS.items() if on[source])
    return _SOURCE_WEIGHTS["web"] / total if on["web"] and total else 0.0


def random_uuid4(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (reproducible, unlike ``uuid.uuid4()``).

    Same bits as ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, formatted directly.
    """
    bits = rng.getrandbits(128)
    bits = (bits & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class EventSimulator:
    """Plans the messages of one run; iterate it to get them in send order.

    Each arrival becomes exactly one message, of one kind drawn with the configured fractions:
    malformed, late (sent ``late_min..late_max`` s after its event_time), very late (event_time
    hours back, kind ``late``), duplicate (a recent valid message again, byte for byte) or on
    time. So ``count`` arrivals give exactly ``count`` messages, held-back ones included.

    Args:
        config: what to produce.
        max_message_bytes: the ingest size limit; ``oversized`` messages exceed it.
        start: epoch seconds where the timeline starts (default: ``clock()``).
        clock: wall clock; used for ``start`` and, in ``max_rate`` mode, to stamp every event.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        max_message_bytes: int = IngestSettings.max_message_bytes,
        start: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.seed = (
            config.seed if config.seed is not None else random.SystemRandom().randrange(2**63)
        )
        self.rng = random.Random(self.seed)
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.start = clock() if start is None else start
        self.live = config.max_rate
        self.topics = tuple(t for t in TOPICS if t in config.topics)
        self._selected = frozenset(self.topics)
        # Scenarios need the simulated clock (not max_rate); fraud needs the whole web funnel.
        staged = config.scenarios and not self.live
        self.world = World(
            self.rng,
            users=config.users,
            products=config.products,
            devices=config.devices,
            realistic=not self.live,
            web_rate=config.rate * _web_share(self._selected),
            anomalies=(
                AnomalyInjector(self.rng, config.anomaly_every_readings, config.anomaly_kinds)
                if staged and SENSORS in self._selected
                else None
            ),
        )
        if staged and self._selected >= WEB_TOPICS:
            self.world.fraud = FraudScenarios(
                self.world, self.rng, config.fraud_every_purchases, config.fraud_kinds
            )
        self._format = MsFormatter()
        self._held: list[tuple[float, int, _Held]] = []
        self._seq = 0
        self._recent: deque[PlannedMessage] = deque(maxlen=_RECENT_FOR_DUPLICATES)
        self._stopped = False
        self._now = self.start

        sources = {
            "web": bool(self._selected & WEB_TOPICS),
            "app": APP in self._selected,
            "sensor": SENSORS in self._selected,
        }
        next_event = {
            "web": self.world.next_web_event,
            "app": self.world.next_app_event,
            "sensor": self.world.next_sensor_event,
        }
        self._sources: list[Callable[[], Event]] = []
        self._source_cum: list[float] = []
        acc = 0.0
        for source, on in sources.items():
            if on:
                acc += _SOURCE_WEIGHTS[source]
                self._sources.append(next_event[source])
                self._source_cum.append(acc)
        # Very late events come from devices that were offline: avoid orders out of thin air.
        self._very_late_topics = tuple(t for t in self.topics if t != PURCHASES) or self.topics

        self._malformed: list[tuple[QuarantineReason, tuple[str, ...]]] = []
        for reason in config.malformed_reasons:
            usable = topics_for_reason(reason, self.topics)
            if usable:
                self._malformed.append((reason, usable))
        if config.malformed_fraction > 0 and not self._malformed:
            raise ConfigError(
                "none of the malformed reasons can be produced on the selected topics "
                "(out_of_range needs shop.searches or shop.purchases)"
            )

        c = config
        self._p_malformed = c.malformed_fraction
        self._p_late = self._p_malformed + c.late_fraction
        self._p_very_late = self._p_late + c.very_late_fraction
        self._p_duplicate = self._p_very_late + c.duplicate_fraction
        self._end = (
            self.start + c.duration if c.duration else float("inf")
        )  # duration 0/None: until stopped

        bursts = c.burst_every_seconds > 0 and not self.live
        mean_burst = sum(_BURST_SECONDS) / 2
        mean_factor = sum(_BURST_FACTOR) / 2
        self._bursts = bursts
        self._calm_rate = (
            c.rate
            * (c.burst_every_seconds + mean_burst)
            / (c.burst_every_seconds + mean_burst * mean_factor)
            if bursts
            else c.rate
        )
        self._t = self.start
        self._regime_end = self.start
        self._regime_rate = self._calm_rate
        self._in_burst = True  # so the first regime drawn is calm
        self.arrivals = 0
        self._count = c.count
        self.history: HistoryPlan | None = None
        self._day = 0
        self._day_arrivals = 0
        if c.history_days:
            total = c.count if c.count is not None else round(c.rate * (c.duration or 0.0))
            self._count = total
            self._end = float("inf")
            self.history = plan_history(
                self.rng, start=self.start, days=c.history_days, arrivals=total, users=c.users
            )
            self._t = self._regime_end = self.history.block_starts[0]
            self.world.set_active_users(list(self.history.active_users[0]))

    # ------------------------------------------------------------------ control

    @property
    def pending_late(self) -> int:
        """Held-back messages not yet released."""
        return len(self._held)

    def stop(self) -> None:
        """End arrivals now; held-back messages are then released at once (still ``late``)."""
        self._stopped = True

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[PlannedMessage]:
        count = self._count
        held = self._held
        while not self._stopped and (count is None or self.arrivals < count):
            if self.history is not None and not self._history_day_open():
                break
            t = self._next_arrival()
            if t > self._end:
                self._now = self._end
                break
            self._now = t
            while held and held[0][0] <= t:
                send_at, _, h = heapq.heappop(held)
                yield self._release(h, send_at)
            self.arrivals += 1
            self._day_arrivals += 1
            msg = self._arrival(t)
            if msg is not None:
                yield msg
        while held:
            send_at, _, h = heapq.heappop(held)
            if self._stopped or not self.config.wait_late:
                now = self.clock() if self.live else self._now
                send_at = min(send_at, max(now, h.event_time_ms / 1000))
            yield self._release(h, send_at)

    def _history_day_open(self) -> bool:
        """Move to the next history day once this one has had its arrivals; ``False`` at the end.

        The clock jumps to the next day's block (never backwards); live web sessions and fraud
        scenarios are abandoned (app sessions were closed in the day's last arrivals).
        """
        plan = self.history
        assert plan is not None
        while self._day_arrivals >= plan.quotas[self._day]:
            self.world.end_day()
            self._day += 1
            if self._day >= len(plan.quotas):
                return False
            self._day_arrivals = 0
            self._t = self._regime_end = max(plan.block_starts[self._day], self._t)
            self._in_burst = True
            self.world.set_active_users(list(plan.active_users[self._day]))
        return True

    def _closing_app_sessions(self) -> bool:
        """In a history day's last arrivals, one per live app session, the sessions close."""
        if self.history is None:
            return False
        left = self.history.quotas[self._day] - self._day_arrivals + 1
        return 0 < left <= len(self.world.app_sessions)

    def _next_arrival(self) -> float:
        """Next arrival time: exponential gaps at the current regime's rate.

        The process is memoryless, so when a gap crosses a regime boundary the draw restarts at
        the boundary with the new rate; that gives an exact piecewise-constant-rate Poisson process.
        """
        if self.live:
            return self.clock()
        rng = self.rng
        while True:
            t = self._t + rng.expovariate(self._regime_rate)
            if not self._bursts or t <= self._regime_end:
                self._t = t
                return t
            self._t = self._regime_end
            if self._in_burst:
                self._in_burst = False
                self._regime_rate = self._calm_rate
                self._regime_end = self._t + rng.expovariate(1.0 / self.config.burst_every_seconds)
            else:
                self._in_burst = True
                self._regime_rate = self._calm_rate * rng.uniform(*_BURST_FACTOR)
                self._regime_end = self._t + rng.uniform(*_BURST_SECONDS)

    def _arrival(self, t: float) -> PlannedMessage | None:
        self.world.now_ms = int(t * 1000)
        if self._closing_app_sessions():
            event = self.world.close_app_session()
            if event is not None:
                return self._emit(*event[:3], t, t, ON_TIME, event[3])
        r = self.rng.random()
        if r < self._p_malformed:
            return self._malformed_message(t)
        if r < self._p_late:
            self._hold(t)
            return None
        if r < self._p_very_late:
            c = self.config
            age = self.rng.uniform(c.very_late_min_seconds, c.very_late_max_seconds)
            topic = self.rng.choice(self._very_late_topics)
            event_type, payload = self.world.standalone(topic)
            return self._emit(topic, event_type, payload, t - age, t, LATE)
        if r < self._p_duplicate and self._recent:
            recent = self._recent
            original = recent[-1 - self.rng.randrange(min(len(recent), _DUPLICATE_LOOKBACK))]
            return replace(original, kind=DUPLICATE, send_at=t)
        topic, event_type, payload, label = self._next_event()
        return self._emit(topic, event_type, payload, t, t, ON_TIME, label)

    def _next_event(self) -> Event:
        """The next world event on a selected topic (events of other topics are skipped)."""
        rng = self.rng
        sources = self._sources
        cum = self._source_cum
        last = len(sources) - 1
        for _ in range(_MAX_SKIPS):
            i = 0
            if last:
                x = rng.random() * cum[last]
                while i < last and x >= cum[i]:
                    i += 1
            event = sources[i]()
            if event[0] in self._selected:
                return event
        raise RuntimeError("no event on the selected topics")  # pragma: no cover

    def _record(
        self, event_type: str, payload: dict[str, Any], event_ms: int, send_ms: int | None
    ) -> tuple[str, dict[str, Any]]:
        event_id = random_uuid4(self.rng)
        fmt = self._format
        record = {
            "event_id": event_id,
            "event_type": event_type,
            "event_time": fmt(event_ms),
            "received_time": None if send_ms is None else fmt(send_ms),
        }
        record.update(payload)
        return event_id, record

    def _emit(
        self,
        topic: str,
        event_type: str,
        payload: dict[str, Any],
        event_t: float,
        send_t: float,
        kind: LedgerKind,
        label: str | None = None,
    ) -> PlannedMessage:
        event_ms = int(event_t * 1000)
        event_id, record = self._record(event_type, payload, event_ms, int(send_t * 1000))
        key = str(payload[TOPICS[topic].key_field]).encode()
        msg = PlannedMessage(
            topic,
            key,
            orjson.dumps(record),
            kind,
            None,
            event_id,
            event_type,
            event_ms,
            send_t,
            label,
        )
        self._recent.append(msg)
        return msg

    def _hold(self, t: float) -> None:
        c = self.config
        topic, event_type, payload, label = self._next_event()
        event_ms = int(t * 1000)
        _, record = self._record(event_type, payload, event_ms, None)
        send_at = t + self.rng.uniform(c.late_min_seconds, c.late_max_seconds)
        key = str(payload[TOPICS[topic].key_field]).encode()
        self._seq += 1
        heapq.heappush(self._held, (send_at, self._seq, _Held(topic, record, key, event_ms, label)))

    def _release(self, h: _Held, send_at: float) -> PlannedMessage:
        record = h.record
        record["received_time"] = self._format(int(send_at * 1000))
        msg = PlannedMessage(
            h.topic,
            h.key,
            orjson.dumps(record),
            LATE,
            None,
            record["event_id"],
            record["event_type"],
            h.event_time_ms,
            send_at,
            h.label,
        )
        self._recent.append(msg)
        return msg

    def _malformed_message(self, t: float) -> PlannedMessage:
        rng = self.rng
        reason, topics = self._malformed[rng.randrange(len(self._malformed))]
        topic = rng.choice(topics)
        contract = TOPICS[topic]
        event_type, payload = self.world.standalone(topic)
        event_ms = int(t * 1000)
        _, record = self._record(event_type, payload, event_ms, event_ms)
        key = str(payload[contract.key_field]).encode()
        broken = break_record(
            rng,
            reason,
            contract,
            record,
            event_time_ms=event_ms,
            max_message_bytes=self.max_message_bytes,
        )
        return PlannedMessage(
            topic,
            key,
            broken.value,
            MALFORMED,
            reason,
            broken.event_id,
            broken.event_type,
            broken.event_time_ms,
            t,
        )


def generate_messages(
    config: SimulatorConfig | None = None,
    n: int | None = None,
    *,
    start: float | None = None,
    max_message_bytes: int = IngestSettings.max_message_bytes,
    clock: Callable[[], float] = time.time,
) -> Iterator[PlannedMessage]:
    """Plan messages without Kafka: ``n`` of them, or as many as ``config`` says.

    With no config this is the benchmark preset :meth:`SimulatorConfig.bulk`: ``n`` valid,
    on-time, ~300-byte messages stamped with the wall clock, nothing late, duplicated or broken.
    """
    if config is None:
        if n is None:
            raise ValueError("give a config, a count n, or both")
        config = SimulatorConfig.bulk(n)
    elif n is not None:
        config = replace(config, count=n, duration=None)
    return iter(
        EventSimulator(config, max_message_bytes=max_message_bytes, start=start, clock=clock)
    )
