"""``gold/fraud_flags`` over a real lake: the cross-topic dependencies of the sequence rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from tidelake.contracts import TOPICS, TopicContract
from tidelake.fake_kafka import FakeKafka
from tidelake.ingest import IngestEngine
from tidelake.lake import Lake
from tidelake.layers import refresh_silver
from tidelake.layers.fraud import FRAUD_FLAGS_PATH, refresh_fraud_flags, stale_fraud_hours
from tidelake.layers.hours import key_of
from tidelake.settings import IngestSettings, KafkaSettings, LakeSettings, RefreshSettings

PURCHASES, PAGE_VIEWS, CLICKS = (
    TOPICS[n] for n in ("shop.purchases", "shop.page_views", "shop.clicks")
)
SETTINGS = RefreshSettings(partitions_start="2025-01-01")
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(minutes=30)
OPEN = NOW.replace(minute=0)
BEFORE = OPEN - timedelta(hours=1)


class Shop:
    """Purchases, page views and clicks through the in-memory Kafka into bronze and silver."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.kafka = FakeKafka()
        for c in (PURCHASES, PAGE_VIEWS, CLICKS):
            self.kafka.create_topic(c.name, partitions=1)
        self.engine = IngestEngine(
            lake,
            KafkaSettings(consumer_group="fraud"),
            IngestSettings(quiet_seconds=0.02),
            consumer_factory=self.kafka.consumer_factory,
        )

    def send(self, contract: TopicContract, at: datetime, **fields: Any) -> str:
        event_id = str(uuid.uuid4())
        value = {"event_id": event_id, "event_time": at.isoformat(), "user_id": "u1"} | fields
        self.kafka.produce(contract.name, orjson.dumps(value), key=b"u1")
        return event_id

    def purchase(self, at: datetime, session: str = "s1", product: str = "p1") -> str:
        return self.send(
            PURCHASES,
            at,
            event_type="purchase",
            session_id=session,
            order_id=str(uuid.uuid4()),
            product_id=product,
            quantity=1,
            unit_price=20.0,
            currency="EUR",
            payment_method="card",
            ip_address="198.51.100.7",
        )

    def view(self, at: datetime, session: str = "s1", product: str = "p1") -> None:
        self.send(
            PAGE_VIEWS,
            at,
            event_type="page_view",
            session_id=session,
            product_id=product,
            page=f"/p/{product}",
            referrer=None,
            device="desktop",
        )

    def settle(self) -> None:
        """Ingest every topic and refresh its silver."""
        for c in (PURCHASES, PAGE_VIEWS, CLICKS):
            self.engine.ingest_topic(c)
            refresh_silver(self.lake, c, settings=SETTINGS, now=NOW)


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop(Lake.from_settings(LakeSettings(uri=str(tmp_path / "lake"))))


def flags(lake: Lake) -> list[tuple[str, str]]:
    table = lake.open(FRAUD_FLAGS_PATH)
    assert table is not None
    frame = pl.from_arrow(table.to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return sorted(frame.select("event_id", "rule").iter_rows())


def test_a_purchase_nobody_browsed_is_flagged_and_one_browsed_before_is_not(shop: Shop) -> None:
    shop.view(OPEN + timedelta(minutes=1), session="s2", product="p2")
    browsed = shop.purchase(OPEN + timedelta(minutes=5), session="s2", product="p2")
    blind = shop.purchase(OPEN + timedelta(minutes=6))
    shop.settle()

    result = refresh_fraud_flags(shop.lake, settings=SETTINGS, now=NOW)

    assert result.hour_keys == [key_of(OPEN.date(), OPEN.hour)]
    assert flags(shop.lake) == [(blind, "purchase_without_browsing")]
    assert browsed not in {e for e, _ in flags(shop.lake)}
    assert result.hours[0].details["flags_purchase_without_browsing"] == 1


def test_a_late_page_view_of_the_hour_before_clears_the_flag_of_the_purchase_it_precedes(
    shop: Shop,
) -> None:
    blind = shop.purchase(OPEN + timedelta(minutes=10))
    shop.settle()
    refresh_fraud_flags(shop.lake, settings=SETTINGS, now=NOW)
    assert flags(shop.lake) == [(blind, "purchase_without_browsing")]

    shop.view(BEFORE + timedelta(minutes=55))  # late: 15 min before the purchase, previous hour
    shop.settle()

    stale = stale_fraud_hours(shop.lake, now=NOW).hours
    assert key_of(OPEN.date(), OPEN.hour) in stale, "the page view's hour affects the next one"
    refresh_fraud_flags(shop.lake, settings=SETTINGS, now=NOW)
    assert flags(shop.lake) == []
    assert refresh_fraud_flags(shop.lake, settings=SETTINGS, now=NOW).version is None


def test_a_velocity_burst_across_the_hour_boundary_uses_the_previous_hour_as_context(
    shop: Shop,
) -> None:
    for minute in (56, 57, 58, 59):  # four purchases just before the hour, each browsed
        at = BEFORE + timedelta(minutes=minute)
        shop.view(at - timedelta(seconds=30), product=f"p{minute}")
        shop.purchase(at, product=f"p{minute}")
    at = OPEN + timedelta(minutes=1)
    shop.view(at - timedelta(seconds=30), product="p5")
    fifth = shop.purchase(at, product="p5")
    shop.settle()

    refresh_fraud_flags(shop.lake, settings=SETTINGS, now=NOW)

    assert flags(shop.lake) == [(fifth, "velocity")]
