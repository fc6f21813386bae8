"""The simulated world: shoppers in web sessions, app users, a catalogue, sensor devices.

Everything draws from one ``random.Random`` so a seed reproduces the whole world and every event.
The world only decides *what* happens (topic, event_type, payload, label); the generator decides
*when* (it sets :attr:`World.now_ms` before each event) and how the message is delivered.
"""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING, Any

from tidelake.simulator.entities import (
    APP,
    APP_SCREENS,
    APP_VERSION_WEIGHTS,
    APP_VERSIONS,
    CATEGORIES,
    CLICK_ELEMENTS,
    CLICKS,
    COUNTRIES,
    DEVICE_WEIGHTS,
    DEVICES,
    PAGE_VIEWS,
    PAYMENT_METHODS,
    PAYMENT_WEIGHTS,
    PURCHASES,
    REFERRER_WEIGHTS,
    REFERRERS,
    SEARCHES,
    SENSORS,
    SITES,
    AppSession,
    CartLine,
    Event,
    OrderBook,
    Payload,
    Product,
    PurchaseTracker,
    User,
    WebSession,
    add_to_cart_payload,
    page_view_payload,
    purchase_payload,
    zipf_cum_weights,
)
from tidelake.simulator.sensors import (
    AnomalyInjector,
    make_sensor,
    next_reading,
    reading_payload,
)
from tidelake.simulator.standalone import standalone_event

if TYPE_CHECKING:
    from tidelake.simulator.scenarios import FraudScenarios


SESSION_STEP_SECONDS = 8.0
"""Mean time between two steps of one web session in paced runs (sets how many run at once)."""
SETTLE_MS = 5_000
"""Normal shoppers pay at least this long after their last add_to_cart (the rule flags < 3 s)."""
CART_FRESH_MS = 20 * 60 * 1000
"""Cart lines older than this are dropped at checkout (the browsing rule looks back 30 min)."""
ORDER_CAP = 250.0
"""Normal orders stay under this total ..."""
ORDER_CAP_MEDIANS = 4.0
"""... and under this multiple of the trailing median (the high_value rule flags 10x)."""
PAYMENT_SWITCH_MS = 3 * 3600 * 1000
"""A normal user changes payment method only this long after their last order (rule: 3 in 1 h)."""


class World:
    """The entities and their state machines; ``next_*_event`` advances one of them.

    Rules it keeps, which downstream checks rely on:

    - a web session starts with a page view; an ``add_to_cart`` is only for a product the session
      viewed; a ``purchase`` line is only for a product in the session's cart, after a checkout
      page view, and all lines of one checkout share an ``order_id``;
    - an app session is ``app_open``, then screen views and taps, then ``app_close``;
    - each sensor reports its metrics in turn around a per-device baseline with small noise and
      a slow wander; anomalies are injected only as labelled segments (:mod:`.sensors`).

    With ``realistic`` (paced and history runs: event times are the simulated clock
    :attr:`now_ms`), normal shoppers also never trigger a fraud rule: they pay >= 5 s after their
    last add_to_cart and within 20 min of it, keep one payment method (switching only after 3 h
    without orders), buy at most 4 purchase events in any 10 min, spend under 250 and under 4x
    the trailing median order, and use their own IP (or a random one), never a shared pool.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        users: int,
        products: int,
        devices: int,
        realistic: bool = False,
        anomalies: AnomalyInjector | None = None,
        web_rate: float = 0.0,
    ) -> None:
        self.rng = rng
        self.realistic = realistic
        self.now_ms = 0
        self.products = [self._make_product(i) for i in range(products)]
        self.product_cum = zipf_cum_weights(len(self.products), 1.1)
        self.users = [self._make_user(f"u-{i:06d}") for i in range(users)]
        self._pool = self.users
        self._pool_cum = zipf_cum_weights(len(self.users), 0.7)
        self.sensors = [make_sensor(rng, i, SITES) for i in range(devices)]
        self.anomalies = anomalies
        self.web_sessions: list[WebSession] = []
        self.app_sessions: list[AppSession] = []
        self._app_users: dict[str, AppSession] = {}
        self.target_web_sessions = max(1, min(200, users // 5))
        if realistic:
            # Enough concurrent sessions that each steps about every SESSION_STEP_SECONDS at the
            # expected web event rate: shoppers move at a human pace at any rate.
            paced = int(web_rate * SESSION_STEP_SECONDS)
            self.target_web_sessions = max(self.target_web_sessions, min(paced, 2 * users))
        self.target_app_sessions = max(1, min(80, users // 10))
        self.queries = [(cat, q) for cat, qs in CATEGORIES.items() for q in qs]
        self.orders = OrderBook()
        self.purchases = PurchaseTracker()
        self.fraud: FraudScenarios | None = None
        self._extra_users = itertools.count(users)

    # ------------------------------------------------------------------ entities

    def _hex(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _make_product(self, i: int) -> Product:
        rng = self.rng
        category = rng.choice(list(CATEGORIES))
        # A shop of everyday goods: 5-180 with a median near 25, so order totals stay ordinary.
        price = round(min(180.0, rng.lognormvariate(3.2, 0.55)), 2)
        return Product(f"p-{i:05d}", category, max(price, 4.99))

    def _make_user(self, user_id: str) -> User:
        rng = self.rng
        country = rng.choices(COUNTRIES, weights=[c[2] for c in COUNTRIES])[0]
        platform = rng.choice(("ios", "android"))
        return User(
            user_id=user_id,
            currency=country[1],
            device=rng.choices(DEVICES, weights=DEVICE_WEIGHTS)[0],
            ip_address=self.new_ip(),
            payment_method=rng.choices(PAYMENT_METHODS, weights=PAYMENT_WEIGHTS)[0],
            app_device_id=f"{platform[:3]}-{self._hex(48)}",
            platform=platform,
            app_version=rng.choices(APP_VERSIONS, weights=APP_VERSION_WEIGHTS)[0],
        )

    def new_ip(self) -> str:
        """A random public-looking IPv4 address: 2^32 of them, so two users never share one."""
        r = self.rng.getrandbits(32)
        return f"{(r >> 24) % 223 + 1}.{(r >> 16) & 255}.{(r >> 8) & 255}.{r & 255 or 1}"

    def new_user(self) -> User:
        """A user outside the shopper population (normal traffic never picks them)."""
        return self._make_user(f"u-{next(self._extra_users):06d}")

    def new_session_id(self) -> str:
        return f"s-{self._hex(64)}"

    def new_order_id(self) -> str:
        return f"o-{self._hex(64)}"

    def set_active_users(self, indices: list[int]) -> None:
        """Restrict normal traffic to these users (a history day); popularity keeps its skew."""
        self._pool = [self.users[i] for i in indices] or self.users
        self._pool_cum = list(
            itertools.accumulate(1.0 / ((i + 1) ** 0.7) for i in indices)
        ) or zipf_cum_weights(len(self.users), 0.7)

    def end_day(self) -> None:
        """A history day ends: live web sessions and fraud scenarios are abandoned where they are.

        App sessions are closed by the generator first (:meth:`close_app_session`) so every
        ``app_open`` keeps its ``app_close``.
        """
        self.web_sessions.clear()
        self.purchases.forget_queued()
        if self.fraud is not None:
            self.fraud.clear()

    def pick_user(self) -> User:
        return self.rng.choices(self._pool, cum_weights=self._pool_cum)[0]

    def pick_product(self) -> Product:
        return self.rng.choices(self.products, cum_weights=self.product_cum)[0]

    # ------------------------------------------------------------------ web shop

    def next_web_event(self) -> Event:
        """The next web event: a due fraud-scenario step, else one step of a live session."""
        if self.fraud is not None:
            staged = self.fraud.next_due(self.now_ms)
            if staged is not None:
                return staged
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
        if event[0] == PURCHASES and self.realistic:
            self.purchases.emitted(session.user.user_id, self.now_ms)
            if self.fraud is not None:
                self.fraud.on_normal_purchase(self.now_ms)
        return event

    def _start_web_session(self) -> WebSession:
        rng = self.rng
        user = self.pick_user()
        # Mostly the user's usual device and address; sometimes not (travel, mobile network).
        device = user.device if rng.random() < 0.85 else rng.choice(DEVICES)
        ip = user.ip_address if rng.random() < 0.9 else self.new_ip()
        session = WebSession(user, self.new_session_id(), device, ip)
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
        s.pending.append(
            (PAGE_VIEWS, "page_view", page_view_payload(s, page, product, referrer), None)
        )

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
            if self.realistic and self.now_ms - s.last_add_ms < SETTLE_MS:
                self._view(s, "/cart", None, "internal")  # a look at the cart before paying
            else:
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
            s.pending.append((CLICKS, "click", payload, None))
            self._view_product(s, product, "internal")
        elif s.viewed:
            product = s.viewed[-1] if rng.random() < 0.7 else rng.choice(s.viewed)
            quantity = 1 if rng.random() < 0.8 else rng.randint(2, 3)
            s.cart.append(CartLine(product, quantity, self.now_ms))
            s.last_add_ms = self.now_ms
            s.pending.append((CLICKS, "add_to_cart", add_to_cart_payload(s, product), None))
        else:
            self._view_product(s, self.pick_product(), "internal")

    def _search(self, s: WebSession) -> None:
        rng = self.rng
        _category, query = rng.choice(self.queries)
        if rng.random() < 0.05:
            query = query + " " + rng.choice(("xl", "red", "sale", "cheap", "2024"))
        results = 0 if rng.random() < 0.06 else max(1, int(rng.paretovariate(1.2) * 8))
        payload = self._web_payload(s, query=query, results_count=results)
        s.pending.append((SEARCHES, "search", payload, None))
        if results and rng.random() < 0.7:
            product = self.pick_product()
            click = self._web_payload(s, product_id=product.product_id, element="search_result")
            s.pending.append((CLICKS, "click", click, None))
            self._view_product(s, product, "internal")

    def _order_lines(self, s: WebSession) -> list[CartLine]:
        """The cart lines a normal checkout may buy now without looking like fraud.

        Stale lines are dropped from the cart; lines over the velocity allowance or the order
        cap stay in the cart (or are dropped, if they alone exceed the cap).
        """
        now = self.now_ms
        s.cart = [line for line in s.cart if now - line.added_ms <= CART_FRESH_MS]
        allowance = self.purchases.allowance(s.user.user_id, now)
        median, orders = self.orders.median(now)
        cap = min(ORDER_CAP, ORDER_CAP_MEDIANS * median) if orders >= 10 else ORDER_CAP
        lines: list[CartLine] = []
        total = 0.0
        for line in list(s.cart):
            if len(lines) >= allowance:
                break
            cost = line.product.unit_price * line.quantity
            if cost > cap:
                line.quantity = 1
                cost = line.product.unit_price
            if cost > cap:
                s.cart.remove(line)  # too dear for this shopper today
            elif total + cost <= cap:
                lines.append(line)
                total += cost
        return lines

    def _checkout(self, s: WebSession) -> None:
        rng = self.rng
        self._view(s, "/checkout", None, "internal")
        if rng.random() < 0.25:  # abandoned at checkout
            s.done = rng.random() < 0.5
            return
        user = s.user
        if self.realistic:
            lines = self._order_lines(s)
            if not lines:
                s.done = rng.random() < 0.5
                return
            if self.now_ms - user.last_purchase_ms > PAYMENT_SWITCH_MS and rng.random() < 0.05:
                user.payment_method = rng.choices(PAYMENT_METHODS, weights=PAYMENT_WEIGHTS)[0]
            payment = user.payment_method
            user.last_purchase_ms = self.now_ms
            self.orders.add(self.now_ms, sum(x.product.unit_price * x.quantity for x in lines))
            self.purchases.queue(user.user_id, len(lines))
        else:
            lines = s.cart
            payment = user.payment_method if rng.random() < 0.9 else rng.choice(PAYMENT_METHODS)
        order_id = self.new_order_id()
        for line in lines:
            payload = purchase_payload(
                s, order_id, line.product, line.quantity, payment, line.product.unit_price
            )
            s.pending.append((PURCHASES, "purchase", payload, None))
        s.cart = [line for line in s.cart if line not in lines]
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
                live.pending.append((APP, "app_open", self.app_payload(live), None))
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

    def close_app_session(self) -> Event | None:
        """Close the most recently opened live app session (``None`` if there is none)."""
        if not self.app_sessions:
            return None
        session = self.app_sessions.pop()
        del self._app_users[session.user.user_id]
        return (APP, "app_close", self.app_payload(session), None)

    def app_payload(self, s: AppSession) -> Payload:
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
            s.pending.append((APP, "app_close", self.app_payload(s), None))
        elif rng.random() < 0.45:
            s.screen = rng.choice(APP_SCREENS)
            s.pending.append((APP, "screen_view", self.app_payload(s), None))
        else:
            s.pending.append((APP, "tap", self.app_payload(s), None))

    # ------------------------------------------------------------------ sensors

    def next_sensor_event(self) -> Event:
        """One reading of a random device, its metrics in turn (perhaps part of an anomaly)."""
        sensor = self.sensors[self.rng.randrange(len(self.sensors))]
        i = sensor.next_metric
        sensor.next_metric = (i + 1) % len(sensor.series)
        series = sensor.series[i]
        if self.anomalies is not None and series.segment is None:
            self.anomalies.maybe_start(series)
        value, label = next_reading(self.rng, series)
        return (SENSORS, "sensor_reading", reading_payload(sensor, series.spec, value), label)

    # ------------------------------------------------------------------ one-off events

    def standalone(self, topic: str) -> tuple[str, Payload]:
        """A plausible event of ``topic`` that touches no session or series state (very late
        events, templates of malformed messages): see :func:`.standalone.standalone_event`."""
        return standalone_event(self, topic)


def _swap_remove(items: list[Any], i: int) -> None:
    """Remove ``items[i]`` in O(1) by moving the last item into its place (order is irrelevant)."""
    last = items.pop()
    if i < len(items):
        items[i] = last
