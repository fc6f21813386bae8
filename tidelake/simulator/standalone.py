"""One-off events that touch no session or series state: very late events and malformed templates.

Kept apart from the live state machines so neither kind breaks the funnel order of a session
(a purchase out of thin air) nor an anomaly segment of a sensor series.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidelake.simulator.entities import (
    APP,
    APP_SCREENS,
    CLICK_ELEMENTS,
    CLICKS,
    PAGE_VIEWS,
    PURCHASES,
    REFERRER_WEIGHTS,
    REFERRERS,
    SEARCHES,
    SENSORS,
    AppSession,
    Payload,
)
from tidelake.simulator.sensors import plain_reading

if TYPE_CHECKING:
    from tidelake.simulator.world import World


def standalone_event(world: World, topic: str) -> tuple[str, Payload]:
    """A plausible ``(event_type, payload)`` of ``topic`` with a fresh session id."""
    rng = world.rng
    user = world.pick_user()
    product = world.pick_product()
    session_id = world.new_session_id()
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
            "query": rng.choice(world.queries)[1],
            "results_count": rng.randint(1, 200),
        }
    if topic == PURCHASES:
        return "purchase", {
            "user_id": user.user_id,
            "session_id": session_id,
            "order_id": world.new_order_id(),
            "product_id": product.product_id,
            "quantity": rng.randint(1, 3),
            "unit_price": product.unit_price,
            "currency": user.currency,
            "payment_method": user.payment_method,
            "ip_address": user.ip_address,
        }
    if topic == APP:
        s = AppSession(user, rng.choice(APP_SCREENS))
        return rng.choice(("screen_view", "tap")), world.app_payload(s)
    if topic == SENSORS:
        sensor = world.sensors[rng.randrange(len(world.sensors))]
        return "sensor_reading", plain_reading(rng, sensor, rng.randrange(len(sensor.series)))
    raise KeyError(topic)
