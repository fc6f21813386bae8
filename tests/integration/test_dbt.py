"""The warehouse end to end: silver/gold Delta tables → dbt build via the Dagster assets → marts.

Each test writes a small lake in its temporary directory with the contract's silver columns
(partitioned by event_date/event_hour, as silver is), materializes the dbt assets with a real
Dagster instance and the real dbt subprocess, and reads the marts from the DuckDB file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from assets.dbt import build_dbt_assets, dbt_resource
from resources.lake import LakeResource
from resources.warehouse import WarehouseResource
from tidelake.contracts import BRONZE_PARTITION_BY, TOPICS

pytestmark = pytest.mark.integration

DAY1 = date(2025, 3, 1)
DAY2 = date(2025, 3, 2)
DELIVERIES = pa.field("_deliveries", pa.int32(), nullable=False)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


@dataclass
class Lake:
    """A test lake: writes silver rows (envelope and Kafka columns filled in) and gold rows."""

    root: Path

    def silver(self, topic: str, events: Iterable[dict[str, Any]]) -> None:
        contract = TOPICS[topic]
        rows = []
        for offset, event in enumerate(events):
            t = event["event_time"]
            rows.append(
                {
                    "event_id": str(uuid.uuid4()),
                    "received_time": None,
                    "_topic": topic,
                    "_partition": 0,
                    "_offset": offset,
                    "_kafka_timestamp": t,
                    "_key": None,
                    "_key_base64": False,
                    "_ingested_at": t + timedelta(seconds=1),
                    "event_date": t.date(),
                    "event_hour": t.hour,
                    "_deliveries": 1,
                    **event,
                }
            )
        schema = contract.bronze_schema().append(DELIVERIES)
        write_deltalake(
            str(self.root / "silver" / contract.table_name),
            pa.Table.from_pylist(rows, schema=schema),
            mode="append",
            partition_by=list(BRONZE_PARTITION_BY),
        )

    def events_per_hour(self, rows: list[dict[str, Any]]) -> None:
        schema = pa.schema(
            [
                ("topic", pa.string()),
                ("event_type", pa.string()),
                ("window_start", pa.timestamp("us", tz="UTC")),
                ("events", pa.int64()),
                ("late_events", pa.int64()),
                ("duplicates", pa.int64()),
                ("event_date", pa.date32()),
                ("event_hour", pa.int32()),
            ]
        )
        full = [
            {**r, "event_date": r["window_start"].date(), "event_hour": r["window_start"].hour}
            for r in rows
        ]
        write_deltalake(
            str(self.root / "gold" / "events_per_hour"),
            pa.Table.from_pylist(full, schema=schema),
            partition_by=list(BRONZE_PARTITION_BY),
        )


def page_view(user: str, session: str, t: datetime) -> dict[str, Any]:
    return {
        "event_type": "page_view",
        "event_time": t,
        "user_id": user,
        "session_id": session,
        "product_id": "p1",
        "page": "/products/p1",
        "referrer": None,
        "device": "mobile",
    }


def click(user: str, session: str, t: datetime, event_type: str = "click") -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_time": t,
        "user_id": user,
        "session_id": session,
        "product_id": "p1",
        "element": "button",
    }


def purchase(user: str, session: str, order: str, t: datetime) -> dict[str, Any]:
    return {
        "event_type": "purchase",
        "event_time": t,
        "user_id": user,
        "session_id": session,
        "order_id": order,
        "product_id": "p1",
        "quantity": 1,
        "unit_price": 9.5,
        "currency": "EUR",
        "payment_method": "card",
        "ip_address": "192.0.2.1",
    }


def app_open(user: str, t: datetime) -> dict[str, Any]:
    return {
        "event_type": "app_open",
        "event_time": t,
        "user_id": user,
        "device_id": "phone-1",
        "platform": "ios",
        "app_version": "1.0.0",
        "screen": "home",
    }


def reading(device: str, metric: str, value: float, t: datetime) -> dict[str, Any]:
    return {
        "event_type": "sensor_reading",
        "event_time": t,
        "device_id": device,
        "site": "dc-1",
        "metric": metric,
        "value": value,
        "unit": "C",
    }


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


@pytest.fixture
def warehouse(tmp_path: Path) -> WarehouseResource:
    return WarehouseResource(path=str(tmp_path / "wh" / "warehouse.duckdb"))


def materialize(
    lake: Lake, warehouse: WarehouseResource, tags: dict[str, str] | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        build_dbt_assets(),
        resources={
            "dbt": dbt_resource(),
            "lake": LakeResource(uri=str(lake.root)),
            "warehouse": warehouse,
        },
        instance=dg.DagsterInstance.ephemeral(),
        tags=tags,
        raise_on_error=False,
    )


def rows(warehouse: WarehouseResource, sql: str) -> list[tuple[Any, ...]]:
    with warehouse.connect() as con:
        return con.sql(sql).fetchall()


def failed_checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckSeverity]:
    return {e.check_name: e.severity for e in result.get_asset_check_evaluations() if not e.passed}


def day1_shop(lake: Lake) -> None:
    """Three sessions with a view; s1 adds to cart, orders o1 (two lines); u4 only uses the app."""
    lake.silver(
        "shop.page_views",
        [
            page_view("u1", "s1", at(DAY1, 10)),
            page_view("u2", "s2", at(DAY1, 11)),
            page_view("u3", "s3", at(DAY1, 12)),
        ],
    )
    lake.silver(
        "shop.clicks",
        [click("u1", "s1", at(DAY1, 10, 5), "add_to_cart"), click("u2", "s2", at(DAY1, 11, 5))],
    )
    lake.silver(
        "shop.purchases",
        [purchase("u1", "s1", "o1", at(DAY1, 10, 9)), purchase("u1", "s1", "o1", at(DAY1, 10, 9))],
    )
    lake.silver("app.interactions", [app_open("u4", at(DAY1, 9))])


def test_dbt_build_through_dagster_computes_every_mart_and_passes_its_checks(
    lake: Lake, warehouse: WarehouseResource
) -> None:
    day1_shop(lake)  # shop.searches has no table yet: it must read as empty, not fail
    lake.silver(
        "infra.sensor_readings",
        [
            reading("d1", "temp", 20.0, at(DAY1, 10, 1)),
            reading("d1", "temp", 24.0, at(DAY1, 10, 59)),
            reading("d1", "temp", 30.0, at(DAY1, 11, 0)),
        ],
    )
    lake.events_per_hour(
        [
            {"topic": "shop.clicks", "event_type": "click", "window_start": at(DAY1, 10)}
            | {"events": 5, "late_events": 1, "duplicates": 2},
            {"topic": "shop.clicks", "event_type": "click", "window_start": at(DAY1, 11)}
            | {"events": 3, "late_events": 0, "duplicates": 0},
        ]
    )

    result = materialize(lake, warehouse)

    assert result.success
    assert failed_checks(result) == {}
    assert len(result.get_asset_check_evaluations()) > 30
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"marts/daily_kpis", "marts/funnel_daily", "marts/sensor_hourly"} <= materialized
    assert rows(warehouse, "select * from marts.daily_kpis") == [
        (DAY1, 4, 3, 3, 1, 2, 1, pytest.approx(1 / 3))
    ]
    assert rows(warehouse, "select * from marts.funnel_daily") == [
        (DAY1, 3, 1, 1, pytest.approx(1 / 3), 1.0, pytest.approx(1 / 3))
    ]
    assert rows(
        warehouse,
        "select hour, date, device_id, metric, min_value, avg_value, max_value, readings "
        "from marts.sensor_hourly order by hour",
    ) == [
        (at(DAY1, 10), DAY1, "d1", "temp", 20.0, 22.0, 24.0, 2),
        (at(DAY1, 11), DAY1, "d1", "temp", 30.0, 30.0, 30.0, 1),
    ]
    assert rows(warehouse, "select * from marts.events_daily") == [
        (DAY1, "shop.clicks", "click", 8, 1, 2)
    ]
    schemas = {r[0] for r in rows(warehouse, "select schema_name from duckdb_schemas()")}
    assert not schemas & {"lake_silver", "lake_gold"}, "the scratch copies of the lake are gone"


@pytest.mark.slow  # three dbt builds: ~30 s on a quiet machine
def test_a_partitioned_run_rebuilds_only_the_days_of_its_partitions(
    lake: Lake, warehouse: WarehouseResource
) -> None:
    day1_shop(lake)
    assert materialize(lake, warehouse).success
    # New events on both days; the run covers one hour of DAY2 only.
    lake.silver(
        "shop.page_views",
        [page_view("u5", "s5", at(DAY1, 13)), page_view("u6", "s6", at(DAY2, 8))],
    )

    result = materialize(lake, warehouse, tags={"dagster/partition": f"{DAY2}-08:00"})

    assert result.success
    kpis = rows(warehouse, "select date, active_users, sessions, page_views from marts.daily_kpis")
    # DAY1 keeps its figures from the first build (its days were not in the window) ...
    assert sorted(kpis) == [(DAY1, 4, 3, 3), (DAY2, 1, 1, 1)]
    # ... and a run without partitions rebuilds everything.
    assert materialize(lake, warehouse).success
    kpis = rows(warehouse, "select date, active_users, sessions, page_views from marts.daily_kpis")
    assert sorted(kpis) == [(DAY1, 5, 4, 4), (DAY2, 1, 1, 1)]


def test_a_failing_dbt_test_is_a_failed_asset_check(
    lake: Lake, warehouse: WarehouseResource
) -> None:
    # One session placing two orders: conversion_rate 2.0 breaks the warn-level "at most one"
    # test; a duplicated event_id in silver breaks an error-level uniqueness test.
    lake.silver("shop.page_views", [page_view("u1", "s1", at(DAY1, 10))])
    lake.silver(
        "shop.purchases",
        [purchase("u1", "s1", "o1", at(DAY1, 10, 1)), purchase("u1", "s1", "o2", at(DAY1, 10, 2))],
    )
    duplicate = reading("d1", "temp", 20.0, at(DAY1, 10))
    lake.silver("infra.sensor_readings", [duplicate])
    lake.silver("infra.sensor_readings", [duplicate | {"event_id": "same"}])
    lake.silver("infra.sensor_readings", [duplicate | {"event_id": "same"}])

    result = materialize(lake, warehouse)

    failed = failed_checks(result)
    assert failed == {
        "daily_kpis_conversion_rate_at_most_one": dg.AssetCheckSeverity.WARN,
        "unique_stg_infra_sensor_readings_event_id": dg.AssetCheckSeverity.ERROR,
    }
    assert not result.success, "an error-severity dbt test fails the run"
    assert rows(warehouse, "select date, orders, conversion_rate from marts.daily_kpis") == [
        (DAY1, 2, 2.0)
    ]
