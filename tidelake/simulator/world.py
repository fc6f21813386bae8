"""The simulated world: shoppers in web sessions, app users, a catalogue, sensor devices.

Everything draws from one ``random.Random`` so a seed reproduces the whole world and every event.
The world only decides *what* happens (topic, event_type, payload); the generator decides *when*
and how the message is delivered (on time, late, duplicated, broken).
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

Payload = dict[str, Any]
Event = tuple[str, str, Payload]
"""(logical topic, event_type, payload fields in contract order)."""

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


@dataclass(frozen=True)
class MetricSpec:
    """A sensor metric: typical baseline range, reading noise, unit and spike size."""

    name: str
    unit: str
    base_low: float
    base_high: float
    noise: float
    spike: float


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("temperature", "C", 20.0, 24.0, 0.3, 15.0),
    MetricSpec("humidity", "%", 38.0, 52.0, 1.2, 30.0),
    MetricSpec("power", "W", 250.0, 900.0, 8.0, 600.0),
    MetricSpec("fan_speed", "rpm", 1800.0, 3200.0, 40.0, 2500.0),
)


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


@dataclass(eq=False)
class Product:
    product_id: str
    category: str
    unit_price: float


@dataclass(eq=False)
class Sensor:
    device_id: str
    site: str
    metrics: list[MetricSpec]
    baselines: list[float]
    drift: list[float]
    next_metric: int = 0
    incident_left: int = 0


@dataclass(eq=False)
class WebSession:
    user: User
    session_id: str
    device: str
    ip_address: str
    viewed: list[Product] = field(default_factory=list)
    cart: list[tuple[Product, int]] = field(default_factory=list)
    steps: int = 0
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


class World:
    """The entities and their state machines; :meth:`next_event` advances one of them.

    Rules it keeps, which downstream checks rely on:

    - a web session starts with a page view; an ``add_to_cart`` is only for a product the session
      viewed; a ``purchase`` line is only for a product in the session's cart, after a checkout
      page view, and all lines of one checkout share an ``order_id``;
    - an app session is ``app_open``, then screen views and taps, then ``app_close``;
    - each sensor reports its metrics in turn around a per-device baseline with small noise,
      slow drift, rare single spikes and rarer multi-reading incidents (anomalies to detect).
    """

    def __init__(self, rng: random.Random, *, users: int, products: int, devices: int) -> None:
        self.rng = rng
        self.products = [self._make_product(i) for i in range(products)]
        self.product_cum = zipf_cum_weights(len(self.products), 1.1)
        self.users = [self._make_user(i) for i in range(users)]
        self.user_cum = zipf_cum_weights(len(self.users), 0.7)
        self.sensors = [self._make_sensor(i) for i in range(devices)]
        self.web_sessions: list[WebSession] = []
        self.app_sessions: list[AppSession] = []
        self._app_users: dict[str, AppSession] = {}
        self.target_web_sessions = max(1, min(200, users // 5))
        self.target_app_sessions = max(1, min(80, users // 10))
        self._queries = [(cat, q) for cat, qs in CATEGORIES.items() for q in qs]

    # ------------------------------------------------------------------ entities

    def _hex(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _make_product(self, i: int) -> Product:
        rng = self.rng
        category = rng.choice(list(CATEGORIES))
        price = round(min(2000.0, rng.lognormvariate(3.3, 0.9)), 2)
        return Product(f"p-{i:05d}", category, max(price, 0.99))

    def _make_user(self, i: int) -> User:
        rng = self.rng
        country = rng.choices(COUNTRIES, weights=[c[2] for c in COUNTRIES])[0]
        platform = rng.choice(("ios", "android"))
        return User(
            user_id=f"u-{i:06d}",
            currency=country[1],
            device=rng.choices(DEVICES, weights=DEVICE_WEIGHTS)[0],
            ip_address=self._ip(),
            payment_method=rng.choices(PAYMENT_METHODS, weights=PAYMENT_WEIGHTS)[0],
            app_device_id=f"{platform[:3]}-{self._hex(48)}",
            platform=platform,
            app_version=rng.choices(APP_VERSIONS, weights=APP_VERSION_WEIGHTS)[0],
        )

    def _make_sensor(self, i: int) -> Sensor:
        rng = self.rng
        site = SITES[i % len(SITES)]
        metrics = [METRICS[0], *rng.sample(METRICS[1:], rng.randint(1, len(METRICS) - 1))]
        return Sensor(
            device_id=f"sensor-{site}-{i:03d}",
            site=site,
            metrics=metrics,
            baselines=[rng.uniform(m.base_low, m.base_high) for m in metrics],
            drift=[0.0] * len(metrics),
        )

    def _ip(self) -> str:
        r = self.rng.getrandbits(32)
        return f"{(r >> 24) % 223 + 1}.{(r >> 16) & 255}.{(r >> 8) & 255}.{r & 255 or 1}"

    def pick_user(self) -> User:
        return self.rng.choices(self.users, cum_weights=self.user_cum)[0]

    def pick_product(self) -> Product:
        return self.rng.choices(self.products, cum_weights=self.product_cum)[0]

    # ------------------------------------------------------------------ web shop

    def next_web_event(self) -> Event:
        """Advance a random live web session (or start one) by one event."""
        sessions = self.web_sessions
        rng = self.rng
        if len(sessions) < self.target_web_sessions and (not sessions or rng.random() < 0.3):
            i = len(sessions)
            sessions.append(self._start_web_session())
        else:
            i = rng.randrange(len(sessions))
        session = sessions[i]
        if not session.pending:
            self._web_step(session)
        event = session.pending.popleft()
        if session.done and not session.pending:
            _swap_remove(sessions, i)
        return event

    def _start_web_session(self) -> WebSession:
        rng = self.rng
        user = self.pick_user()
        # Mostly the user's usual device and address; sometimes not (travel, shared account).
        device = user.device if rng.random() < 0.85 else rng.choice(DEVICES)
        ip = user.ip_address if rng.random() < 0.9 else self._ip()
        session = WebSession(user, f"s-{self._hex(64)}", device, ip)
        referrer = rng.choices(REFERRERS, weights=REFERRER_WEIGHTS)[0]
        landing = rng.random()
        if landing < 0.4:
            self._view(session, "/", None, referrer)
        elif landing < 0.65:
            self._view(session, f"/c/{rng.choice(list(CATEGORIES))}", None, referrer)
        else:
            self._view_product(session, self.pick_product(), referrer)
        return session

    def _web_payload(self, s: WebSession, **fields: Any) -> Payload:
        return {"user_id": s.user.user_id, "session_id": s.session_id, **fields}

    def _view(
        self, s: WebSession, page: str, product: Product | None, referrer: str | None
    ) -> None:
        payload = {
            "user_id": s.user.user_id,
            "session_id": s.session_id,
            "product_id": product.product_id if product else None,
            "page": page,
            "referrer": referrer,
            "device": s.device,
        }
        s.pending.append((PAGE_VIEWS, "page_view", payload))

    def _view_product(self, s: WebSession, product: Product, referrer: str | None) -> None:
        s.viewed.append(product)
        self._view(s, f"/p/{product.product_id}", product, referrer)

    def _web_step(self, s: WebSession) -> None:
        rng = self.rng
        s.steps += 1
        if s.steps > 40:
            s.done = True
            self._view(s, "/", None, None)
            return
        r = rng.random()
        if s.cart and r < 0.22:
            self._checkout(s)
        elif r < 0.30 + min(0.25, s.steps * 0.01):
            # Leave quietly: one last page view, then the session is over.
            s.done = rng.random() < 0.6
            self._view(s, rng.choice(("/", "/help", "/account")), None, "internal")
        elif r < 0.60:
            self._view_product(s, self.pick_product(), "internal")
        elif r < 0.72:
            self._search(s)
        elif r < 0.85:
            product = self.pick_product()
            element = rng.choice(CLICK_ELEMENTS)
            payload = self._web_payload(s, product_id=product.product_id, element=element)
            s.pending.append((CLICKS, "click", payload))
            self._view_product(s, product, "internal")
        elif s.viewed:
            product = s.viewed[-1] if rng.random() < 0.7 else rng.choice(s.viewed)
            quantity = 1 if rng.random() < 0.8 else rng.randint(2, 4)
            s.cart.append((product, quantity))
            payload = self._web_payload(
                s, product_id=product.product_id, element="add_to_cart_button"
            )
            s.pending.append((CLICKS, "add_to_cart", payload))
        else:
            self._view_product(s, self.pick_product(), "internal")

    def _search(self, s: WebSession) -> None:
        rng = self.rng
        _category, query = rng.choice(self._queries)
        if rng.random() < 0.05:
            query = query + " " + rng.choice(("xl", "red", "sale", "cheap", "2024"))
        results = 0 if rng.random() < 0.06 else max(1, int(rng.paretovariate(1.2) * 8))
        payload = self._web_payload(s, query=query, results_count=results)
        s.pending.append((SEARCHES, "search", payload))
        if results and rng.random() < 0.7:
            product = self.pick_product()
            click = self._web_payload(s, product_id=product.product_id, element="search_result")
            s.pending.append((CLICKS, "click", click))
            self._view_product(s, product, "internal")

    def _checkout(self, s: WebSession) -> None:
        rng = self.rng
        self._view(s, "/checkout", None, "internal")
        if rng.random() < 0.25:  # abandoned at checkout
            s.done = rng.random() < 0.5
            return
        order_id = f"o-{self._hex(64)}"
        payment = s.user.payment_method if rng.random() < 0.9 else rng.choice(PAYMENT_METHODS)
        for product, quantity in s.cart:
            payload = {
                "user_id": s.user.user_id,
                "session_id": s.session_id,
                "order_id": order_id,
                "product_id": product.product_id,
                "quantity": quantity,
                "unit_price": product.unit_price,
                "currency": s.user.currency,
                "payment_method": payment,
                "ip_address": s.ip_address,
            }
            s.pending.append((PURCHASES, "purchase", payload))
        s.cart = []
        s.done = rng.random() < 0.7
        self._view(s, "/order/confirmation", None, "internal")

    # ------------------------------------------------------------------ mobile app

    def next_app_event(self) -> Event:
        """Advance a random live app session (or open one) by one event."""
        sessions = self.app_sessions
        rng = self.rng
        if len(sessions) < self.target_app_sessions and (not sessions or rng.random() < 0.3):
            user = self.pick_user()
            # One app session per user at a time: the contract has no session id, so overlapping
            # sessions would make open/close pairs ambiguous downstream.
            live = self._app_users.get(user.user_id)
            if live is None:
                live = AppSession(user, "home", steps_left=int(rng.expovariate(1 / 10)) + 1)
                live.pending.append((APP, "app_open", self._app_payload(live)))
                sessions.append(live)
                self._app_users[user.user_id] = live
            i = next(j for j in range(len(sessions) - 1, -1, -1) if sessions[j] is live)
        else:
            i = rng.randrange(len(sessions))
        session = sessions[i]
        if not session.pending:
            self._app_step(session)
        event = session.pending.popleft()
        if session.done and not session.pending:
            _swap_remove(sessions, i)
            del self._app_users[session.user.user_id]
        return event

    def _app_payload(self, s: AppSession) -> Payload:
        u = s.user
        return {
            "user_id": u.user_id,
            "device_id": u.app_device_id,
            "platform": u.platform,
            "app_version": u.app_version,
            "screen": s.screen,
        }

    def _app_step(self, s: AppSession) -> None:
        rng = self.rng
        s.steps_left -= 1
        if s.steps_left <= 0:
            s.done = True
            s.pending.append((APP, "app_close", self._app_payload(s)))
        elif rng.random() < 0.45:
            s.screen = rng.choice(APP_SCREENS)
            s.pending.append((APP, "screen_view", self._app_payload(s)))
        else:
            s.pending.append((APP, "tap", self._app_payload(s)))

    # ------------------------------------------------------------------ sensors

    def next_sensor_event(self) -> Event:
        """One reading of a random device, its metrics in turn."""
        sensor = self.sensors[self.rng.randrange(len(self.sensors))]
        i = sensor.next_metric
        sensor.next_metric = (i + 1) % len(sensor.metrics)
        return (SENSORS, "sensor_reading", self._reading(sensor, i))

    def _reading(self, sensor: Sensor, i: int) -> Payload:
        rng = self.rng
        spec = sensor.metrics[i]
        # Mean-reverting drift keeps the series wandering without running away.
        drift = sensor.drift[i] * 0.98 + rng.gauss(0.0, spec.noise * 0.2)
        sensor.drift[i] = drift
        value = sensor.baselines[i] + drift + rng.gauss(0.0, spec.noise)
        if sensor.incident_left > 0:
            sensor.incident_left -= 1
            value += spec.spike * rng.uniform(0.4, 0.8)
        elif rng.random() < 0.004:
            value += spec.spike * rng.uniform(0.6, 1.2) * (1 if rng.random() < 0.8 else -0.5)
        elif rng.random() < 0.0005:
            sensor.incident_left = rng.randint(5, 30)
        if spec.name == "humidity":
            value = min(100.0, max(0.0, value))
        return {
            "device_id": sensor.device_id,
            "site": sensor.site,
            "metric": spec.name,
            "value": round(value, 2),
            "unit": spec.unit,
        }

    # ------------------------------------------------------------------ one-off events

    def standalone(self, topic: str) -> tuple[str, Payload]:
        """A plausible event of ``topic`` that touches no session state.

        Used for very late events (a device that was offline for hours) and as the template of
        malformed messages, so neither breaks the funnel order of the live sessions.
        """
        rng = self.rng
        user = self.pick_user()
        product = self.pick_product()
        session_id = f"s-{self._hex(64)}"
        if topic == PAGE_VIEWS:
            return "page_view", {
                "user_id": user.user_id,
                "session_id": session_id,
                "product_id": product.product_id,
                "page": f"/p/{product.product_id}",
                "referrer": rng.choices(REFERRERS, weights=REFERRER_WEIGHTS)[0],
                "device": user.device,
            }
        if topic == CLICKS:
            return "click", {
                "user_id": user.user_id,
                "session_id": session_id,
                "product_id": product.product_id,
                "element": rng.choice(CLICK_ELEMENTS),
            }
        if topic == SEARCHES:
            return "search", {
                "user_id": user.user_id,
                "session_id": session_id,
                "query": rng.choice(self._queries)[1],
                "results_count": rng.randint(1, 200),
            }
        if topic == PURCHASES:
            return "purchase", {
                "user_id": user.user_id,
                "session_id": session_id,
                "order_id": f"o-{self._hex(64)}",
                "product_id": product.product_id,
                "quantity": rng.randint(1, 3),
                "unit_price": product.unit_price,
                "currency": user.currency,
                "payment_method": user.payment_method,
                "ip_address": user.ip_address,
            }
        if topic == APP:
            s = AppSession(user, rng.choice(APP_SCREENS))
            return rng.choice(("screen_view", "tap")), self._app_payload(s)
        if topic == SENSORS:
            sensor = self.sensors[rng.randrange(len(self.sensors))]
            return "sensor_reading", self._reading(sensor, rng.randrange(len(sensor.metrics)))
        raise KeyError(topic)


def _swap_remove(items: list[Any], i: int) -> None:
    """Remove ``items[i]`` in O(1) by moving the last item into its place (order is irrelevant)."""
    last = items.pop()
    if i < len(items):
        items[i] = last
