"""Labelled fraud scenarios, staged among the normal shoppers.

Each scenario is a short script of web events for fresh accounts (users outside the shopper
population, with their own IP addresses), so nothing normal traffic does can push a scenario
over another rule, and no scenario drags a normal user over one. A step becomes due a set delay
after the previous step was *emitted*, and takes the next web arrival after that; labels are
decided when a purchase is emitted, from the actual event times, with the rule semantics of the
shared labels contract (so a label is exactly "this rule must flag this purchase event"):

- ``velocity``: one account buys 5-8 single-line orders a few seconds apart (browsing and adding
  each product first, >= 4 s before paying); purchases with >= 5 in the trailing 10 min get
  ``fraud:velocity`` (the 5th onwards);
- ``ip_sharing``: 5-8 accounts buy from one IP within ~15 min; purchases with >= 5 distinct users
  from that IP in the trailing 60 min get ``fraud:ip_sharing``;
- ``payment_hopping``: one account places 3-4 orders minutes apart with a different payment
  method each; purchases with >= 3 methods in the trailing 60 min get ``fraud:payment_hopping``;
- ``high_value``: one order of >= 15x the trailing 24 h median order total (only once >= 25
  orders are known, the rule needs 20); ``fraud:high_value``;
- ``purchase_without_browsing``: a purchase of a product the session never viewed or carted;
- ``rapid_checkout``: view, add to cart, pay well under 3 s later (``fraud:rapid_checkout`` when
  the emitted gap is < 3 s, which it is unless arrivals are very sparse).

Every other purchase of a scenario (the first 4 of a burst, ...) triggers no rule at all: one
payment method, an IP of its own, ordinary totals, browsing >= 4 s before paying.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tidelake.simulator.entities import (
    CLICKS,
    PAGE_VIEWS,
    PAYMENT_METHODS,
    PURCHASES,
    Event,
    Product,
    User,
    WebSession,
    add_to_cart_payload,
    page_view_payload,
    purchase_payload,
)

if TYPE_CHECKING:
    from tidelake.simulator.world import World

MINUTE_MS = 60_000
HIGH_VALUE_MEDIANS = 15.0
HIGH_VALUE_MIN_ORDERS = 25
_ORDINARY_MEDIANS = 4.0

Step = tuple[int, Callable[[int], Event]]
"""(delay in ms after the previous step was emitted, build the event at emission time)."""


@dataclass(eq=False)
class Script:
    """A running scenario: its remaining steps and the purchases it has emitted."""

    kind: str
    last_ms: int
    steps: deque[Step] = field(default_factory=deque)
    purchases: list[tuple[int, str, str]] = field(default_factory=list)
    """(event time ms, user_id, payment_method) of each emitted purchase."""

    @property
    def due_ms(self) -> int:
        return self.last_ms + self.steps[0][0]

    def recent(self, now_ms: int, window_ms: int) -> list[tuple[int, str, str]]:
        """Purchases with event time in ``(now - window, now]``."""
        return [p for p in self.purchases if p[0] > now_ms - window_ms]


class FraudScenarios:
    """Starts fraud scenarios among normal purchases and emits their due steps.

    Args:
        world: the world whose web arrivals the scenarios share.
        rng: the world's random generator.
        every_purchases: mean normal purchase events between two scenario starts.
        kinds: the rules to stage scenarios for (drawn uniformly).
    """

    def __init__(
        self, world: World, rng: random.Random, every_purchases: float, kinds: tuple[str, ...]
    ) -> None:
        self.world = world
        self.rng = rng
        self.p_start = 1.0 / every_purchases
        self.kinds = kinds
        self.active: list[Script] = []
        self.started: dict[str, int] = dict.fromkeys(kinds, 0)

    def on_normal_purchase(self, now_ms: int) -> None:
        """A normal purchase event was emitted: perhaps start a scenario."""
        if self.kinds and self.rng.random() < self.p_start:
            self.start(self.kinds[self.rng.randrange(len(self.kinds))], now_ms)

    def start(self, kind: str, now_ms: int) -> Script | None:
        """Start a scenario of ``kind`` now (``None`` if it cannot be staged yet)."""
        if kind == "high_value" and self.world.orders.median(now_ms)[1] < HIGH_VALUE_MIN_ORDERS:
            return None
        script = Script(kind, now_ms)
        _BUILDERS[kind](self, script)
        self.active.append(script)
        self.started[kind] += 1
        return script

    def next_due(self, now_ms: int) -> Event | None:
        """The event of the first scenario step due at ``now_ms``, if any."""
        for i, script in enumerate(self.active):
            if script.due_ms <= now_ms:
                _, build = script.steps.popleft()
                script.last_ms = now_ms
                if not script.steps:
                    del self.active[i]
                return build(now_ms)
        return None

    def clear(self) -> None:
        """Abandon the running scenarios (a history day ended)."""
        self.active.clear()

    # ------------------------------------------------------------------ building blocks

    def ms(self, low_s: float, high_s: float) -> int:
        return int(self.rng.uniform(low_s, high_s) * 1000)

    def session(self, user: User, ip: str | None = None) -> WebSession:
        return WebSession(user, self.world.new_session_id(), user.device, ip or user.ip_address)

    def ordinary_product(self) -> Product:
        """A product whose single unit is an unremarkable order (< 4x the trailing median)."""
        world = self.world
        median, orders = world.orders.median(world.now_ms)
        cap = _ORDINARY_MEDIANS * median if orders >= 10 else math.inf
        product = world.pick_product()
        for _ in range(20):
            if product.unit_price <= cap:
                break
            product = world.pick_product()
        return product

    def view(self, s: WebSession, page: str, product: Product | None) -> Callable[[int], Event]:
        def build(now_ms: int) -> Event:
            return (PAGE_VIEWS, "page_view", page_view_payload(s, page, product, None), None)

        return build

    def add_to_cart(self, s: WebSession, product: Product) -> Callable[[int], Event]:
        def build(now_ms: int) -> Event:
            return (CLICKS, "add_to_cart", add_to_cart_payload(s, product), None)

        return build

    def purchase(
        self,
        script: Script,
        s: WebSession,
        product: Product,
        payment: str,
        label: Callable[[int], str | None],
        quantity: Callable[[int], int] = lambda now_ms: 1,
    ) -> Callable[[int], Event]:
        """A single-line order; ``label`` is evaluated after the purchase is recorded."""

        def build(now_ms: int) -> Event:
            qty = quantity(now_ms)
            script.purchases.append((now_ms, s.user.user_id, payment))
            self.world.orders.add(now_ms, qty * product.unit_price)
            payload = purchase_payload(
                s, self.world.new_order_id(), product, qty, payment, product.unit_price
            )
            return (PURCHASES, "purchase", payload, label(now_ms))

        return build

    def browse_and_buy(
        self,
        script: Script,
        s: WebSession,
        payment: str,
        label: Callable[[int], str | None],
        first_delay_ms: int,
    ) -> None:
        """View a product, add it to the cart 2-6 s later, pay 4-10 s after that."""
        product = self.ordinary_product()
        steps = script.steps
        steps.append((first_delay_ms, self.view(s, f"/p/{product.product_id}", product)))
        steps.append((self.ms(2, 6), self.add_to_cart(s, product)))
        steps.append((self.ms(4, 10), self.purchase(script, s, product, payment, label)))


# ---------------------------------------------------------------------- the scenarios


def _velocity(f: FraudScenarios, script: Script) -> None:
    user = f.world.new_user()
    s = f.session(user)

    def label(now_ms: int) -> str | None:
        return "fraud:velocity" if len(script.recent(now_ms, 10 * MINUTE_MS)) >= 5 else None

    script.steps.append((f.ms(0, 2), f.view(s, "/", None)))
    for _ in range(f.rng.randint(5, 8)):
        f.browse_and_buy(script, s, user.payment_method, label, f.ms(3, 12))


def _ip_sharing(f: FraudScenarios, script: Script) -> None:
    ip = f.world.new_ip()

    def label(now_ms: int) -> str | None:
        users = {p[1] for p in script.recent(now_ms, 60 * MINUTE_MS)}
        return "fraud:ip_sharing" if len(users) >= 5 else None

    for _ in range(f.rng.randint(5, 8)):
        user = f.world.new_user()
        f.browse_and_buy(script, f.session(user, ip), user.payment_method, label, f.ms(20, 90))


def _payment_hopping(f: FraudScenarios, script: Script) -> None:
    user = f.world.new_user()
    s = f.session(user)
    methods = f.rng.sample(PAYMENT_METHODS, f.rng.randint(3, 4))

    def label(now_ms: int) -> str | None:
        used = {p[2] for p in script.recent(now_ms, 60 * MINUTE_MS)}
        return "fraud:payment_hopping" if len(used) >= 3 else None

    for k, method in enumerate(methods):
        # Minutes apart: at most 4 purchases in any 10 min, so velocity never fires.
        f.browse_and_buy(script, s, method, label, f.ms(1, 5) if k == 0 else f.ms(180, 480))


def _high_value(f: FraudScenarios, script: Script) -> None:
    user = f.world.new_user()
    s = f.session(user)
    world = f.world
    product = max((world.pick_product() for _ in range(20)), key=lambda p: p.unit_price)
    big: list[bool] = []

    def quantity(now_ms: int) -> int:
        median, orders = world.orders.median(now_ms)
        if orders < HIGH_VALUE_MIN_ORDERS:
            big.append(False)
            return 1
        big.append(True)
        return max(1, math.ceil(HIGH_VALUE_MEDIANS * median / product.unit_price))

    def label(now_ms: int) -> str | None:
        return "fraud:high_value" if big and big[-1] else None

    steps = script.steps
    steps.append((f.ms(0, 3), f.view(s, f"/p/{product.product_id}", product)))
    steps.append((f.ms(3, 10), f.add_to_cart(s, product)))
    steps.append(
        (f.ms(5, 20), f.purchase(script, s, product, user.payment_method, label, quantity))
    )


def _purchase_without_browsing(f: FraudScenarios, script: Script) -> None:
    user = f.world.new_user()
    s = f.session(user)
    product = f.ordinary_product()
    steps = script.steps
    steps.append((f.ms(0, 2), f.view(s, "/", None)))
    steps.append((f.ms(3, 20), f.view(s, "/account", None)))

    def label(now_ms: int) -> str | None:
        return "fraud:purchase_without_browsing"

    steps.append((f.ms(5, 30), f.purchase(script, s, product, user.payment_method, label)))


def _rapid_checkout(f: FraudScenarios, script: Script) -> None:
    user = f.world.new_user()
    s = f.session(user)
    product = f.ordinary_product()
    carted: list[int] = []

    def add(now_ms: int) -> Event:
        carted.append(now_ms)
        return (CLICKS, "add_to_cart", add_to_cart_payload(s, product), None)

    def label(now_ms: int) -> str | None:
        return "fraud:rapid_checkout" if now_ms - carted[-1] < 3000 else None

    steps = script.steps
    steps.append((f.ms(0, 2), f.view(s, f"/p/{product.product_id}", product)))
    steps.append((f.ms(1, 4), add))
    steps.append((f.ms(0.2, 1.5), f.purchase(script, s, product, user.payment_method, label)))


_BUILDERS: dict[str, Callable[[FraudScenarios, Script], None]] = {
    "velocity": _velocity,
    "ip_sharing": _ip_sharing,
    "payment_hopping": _payment_hopping,
    "high_value": _high_value,
    "purchase_without_browsing": _purchase_without_browsing,
    "rapid_checkout": _rapid_checkout,
}
