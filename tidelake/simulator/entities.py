"""The simulated world's vocabulary: topics, catalogue values, and the entity records.

Plain data shared by :mod:`tidelake.simulator.world` (normal traffic) and
:mod:`tidelake.simulator.scenarios` (labelled fraud scenarios), plus the two trackers that keep
normal traffic clear of the fraud rules (:class:`OrderBook`, :class:`PurchaseTracker`).
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

Payload = dict[str, Any]
Event = tuple[str, str, Payload, str | None]
"""(logical topic, event_type, payload fields in contract order, ledger label or ``None``)."""

PAGE_VIEWS = "shop.page_views"
CLICKS = "shop.clicks"
SEARCHES = "shop.searches"
PURCHASES = "shop.purchases"
APP = "app.interactions"
SENSORS = "infra.sensor_readings"

WEB_TOPICS = frozenset({PAGE_VIEWS, CLICKS, SEARCHES, PURCHASES})

CATEGORIES: dict[str, tuple[str, ...]] = {
    "shoes": ("running shoes", "sneakers", "trail shoes", "boots", "sandals"),
    "electronics": ("usb c cable", "headphones", "charger", "bluetooth speaker", "power bank"),
    "kitchen": ("coffee grinder", "chef knife", "frying pan", "kettle", "espresso cups"),
    "books": ("sci fi novel", "cookbook", "kids book", "python programming", "travel guide"),
    "outdoor": ("tent", "sleeping bag", "headlamp", "rain jacket", "backpack"),
    "home": ("desk lamp", "throw pillow", "bath towels", "plant pot", "wall clock"),
}
# (country, currency, weight): the shop sells mostly in the euro area.
COUNTRIES: tuple[tuple[str, str, float], ...] = (
    ("DE", "EUR", 0.30),
    ("FR", "EUR", 0.15),
    ("NL", "EUR", 0.10),
    ("ES", "EUR", 0.08),
    ("IT", "EUR", 0.07),
    ("GB", "GBP", 0.15),
    ("US", "USD", 0.10),
    ("CH", "CHF", 0.05),
)
DEVICES = ("desktop", "mobile", "tablet")
DEVICE_WEIGHTS = (0.45, 0.45, 0.10)
REFERRERS: tuple[str | None, ...] = (
    None,
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://www.instagram.com/",
    "newsletter",
    "affiliate:deals-blog",
)
REFERRER_WEIGHTS = (0.35, 0.35, 0.05, 0.10, 0.10, 0.05)
PAYMENT_METHODS = ("card", "paypal", "invoice", "apple_pay", "klarna")
PAYMENT_WEIGHTS = (0.45, 0.25, 0.10, 0.12, 0.08)
CLICK_ELEMENTS = ("product_card", "recommendation", "banner", "search_result", "related_item")
APP_SCREENS = (
    "home",
    "search",
    "product",
    "cart",
    "checkout",
    "profile",
    "orders",
    "settings",
    "notifications",
)
APP_VERSIONS = ("4.12.0", "4.12.1", "4.13.0", "5.0.0", "5.0.2")
APP_VERSION_WEIGHTS = (0.05, 0.10, 0.25, 0.20, 0.40)
SITES = ("fra1", "ams1", "dub2", "iad3")


@dataclass(eq=False)
class User:
    user_id: str
    currency: str
    device: str
    ip_address: str
    payment_method: str
    app_device_id: str
    platform: str
    app_version: str
    last_purchase_ms: int = -(10**15)


@dataclass(eq=False)
class Product:
    product_id: str
    category: str
    unit_price: float


@dataclass(eq=False)
class CartLine:
    product: Product
    quantity: int
    added_ms: int


@dataclass(eq=False)
class WebSession:
    user: User
    session_id: str
    device: str
    ip_address: str
    viewed: list[Product] = field(default_factory=list)
    cart: list[CartLine] = field(default_factory=list)
    steps: int = 0
    last_add_ms: int = -(10**15)
    pending: deque[Event] = field(default_factory=deque)
    done: bool = False


@dataclass(eq=False)
class AppSession:
    user: User
    screen: str = "home"
    steps_left: int = 0
    pending: deque[Event] = field(default_factory=deque)
    done: bool = False


def zipf_cum_weights(n: int, exponent: float) -> list[float]:
    """Cumulative weights where item ``k`` (1-based rank) has weight ``1 / k**exponent``.

    A few items take most of the traffic (the best sellers, the heavy users), the long tail
    is rarely touched; ``random.choices(items, cum_weights=...)`` then samples in O(log n).
    """
    return list(itertools.accumulate(1.0 / (k**exponent) for k in range(1, n + 1)))


def page_view_payload(
    s: WebSession, page: str, product: Product | None, referrer: str | None
) -> Payload:
    """A ``shop.page_views`` payload of session ``s``."""
    return {
        "user_id": s.user.user_id,
        "session_id": s.session_id,
        "product_id": product.product_id if product else None,
        "page": page,
        "referrer": referrer,
        "device": s.device,
    }


def add_to_cart_payload(s: WebSession, product: Product) -> Payload:
    """A ``shop.clicks`` ``add_to_cart`` payload of session ``s``."""
    return {
        "user_id": s.user.user_id,
        "session_id": s.session_id,
        "product_id": product.product_id,
        "element": "add_to_cart_button",
    }


def purchase_payload(
    s: WebSession,
    order_id: str,
    product: Product,
    quantity: int,
    payment_method: str,
    unit_price: float,
) -> Payload:
    """A ``shop.purchases`` line of session ``s`` (the session's IP, the user's currency)."""
    return {
        "user_id": s.user.user_id,
        "session_id": s.session_id,
        "order_id": order_id,
        "product_id": product.product_id,
        "quantity": quantity,
        "unit_price": unit_price,
        "currency": s.user.currency,
        "payment_method": payment_method,
        "ip_address": s.ip_address,
    }


DAY_MS = 24 * 3600 * 1000


class OrderBook:
    """Order totals of the trailing 24 h, kept sorted: the ``high_value`` rule's median.

    Both sides use it: normal checkouts stay under a multiple of the median (so they never look
    high-value) and the high-value scenario sizes its order well above it.
    """

    def __init__(self) -> None:
        self._by_time: deque[tuple[int, float]] = deque()
        self._sorted: list[float] = []

    def _expire(self, now_ms: int) -> None:
        while self._by_time and self._by_time[0][0] < now_ms - DAY_MS:
            _, total = self._by_time.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, total)]

    def add(self, now_ms: int, total: float) -> None:
        """Record an order placed at ``now_ms`` (times must not decrease)."""
        self._by_time.append((now_ms, total))
        bisect.insort(self._sorted, total)

    def median(self, now_ms: int) -> tuple[float, int]:
        """Median order total of the 24 h before ``now_ms``, and the number of orders in it."""
        self._expire(now_ms)
        n = len(self._sorted)
        if not n:
            return 0.0, 0
        mid = n // 2
        med = self._sorted[mid] if n % 2 else (self._sorted[mid - 1] + self._sorted[mid]) / 2
        return med, n


VELOCITY_MS = 10 * 60 * 1000
VELOCITY_LIMIT = 4
"""Normal users buy at most this many purchase events in any 10 min (the rule flags 5)."""


class PurchaseTracker:
    """Each normal user's recent purchase events, emitted and still queued in sessions.

    A checkout may add ``k`` lines only if emitted-in-the-last-10-min + queued + ``k`` stays
    <= :data:`VELOCITY_LIMIT`. Checked at every checkout, that bounds every 10-minute window:
    the last checkout feeding a window saw all earlier purchases of that window.
    """

    def __init__(self) -> None:
        self._emitted: dict[str, deque[int]] = {}
        self._queued: dict[str, int] = {}

    def allowance(self, user_id: str, now_ms: int) -> int:
        """How many purchase lines the user may queue now."""
        times = self._emitted.get(user_id)
        recent = 0
        if times:
            while times and times[0] <= now_ms - VELOCITY_MS:
                times.popleft()
            recent = len(times)
        return VELOCITY_LIMIT - recent - self._queued.get(user_id, 0)

    def queue(self, user_id: str, lines: int) -> None:
        self._queued[user_id] = self._queued.get(user_id, 0) + lines

    def emitted(self, user_id: str, now_ms: int) -> None:
        self._queued[user_id] -= 1
        self._emitted.setdefault(user_id, deque()).append(now_ms)

    def forget_queued(self) -> None:
        """Sessions were dropped (a history day ended): their queued lines never come."""
        self._queued.clear()
