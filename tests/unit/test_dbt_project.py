"""The dbt project and its Dagster wiring, without running dbt: manifest, keys, checks, rules."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from assets.dbt import (
    DIGEST_FILE,
    REPO_DBT_PROJECT_DIR,
    build_dbt_assets,
    dbt_project,
    dbt_vars,
    ensure_manifest,
    project_digest,
    window_from_tags,
)
from resources.warehouse import WarehouseResource, warehouse_resource
from tidelake.contracts import TOPICS

MARTS = ("daily_kpis", "funnel_daily", "sensor_hourly")


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return json.loads(dbt_project().manifest_path.read_text())


@pytest.fixture(scope="module")
def dbt_assets_def() -> dg.AssetsDefinition:
    [assets] = build_dbt_assets()
    return assets


@pytest.fixture(scope="module")
def plugin() -> ModuleType:
    path = REPO_DBT_PROJECT_DIR / "plugins" / "tidelake_delta.py"
    spec = importlib.util.spec_from_file_location("tidelake_delta", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("tidelake_delta", module)
    spec.loader.exec_module(module)
    return module


def _model(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return manifest["nodes"][f"model.tidelake.{name}"]


def test_manifest_has_the_three_marts_in_schema_marts_with_enforced_contracts(
    manifest: dict[str, Any],
) -> None:
    for name in MARTS:
        node = _model(manifest, name)
        assert node["schema"] == "marts"
        assert node["config"]["contract"]["enforced"] is True
        assert all(c.get("data_type") for c in node["columns"].values())
    assert list(_model(manifest, "daily_kpis")["columns"]) == [
        "date",
        "active_users",
        "sessions",
        "page_views",
        "add_to_carts",
        "purchases",
        "orders",
        "conversion_rate",
    ]


def test_every_topic_and_gold_table_is_a_source_keyed_by_its_lake_asset(
    manifest: dict[str, Any],
) -> None:
    keys = {
        (s["source_name"], s["name"]): s["meta"]["dagster"]["asset_key"]
        for s in manifest["sources"].values()
    }
    expected = {("silver", c.table_name): ["silver", c.table_name] for c in TOPICS.values()}
    expected |= {("gold", n): ["gold", n] for n in ("events_per_minute", "events_per_hour")}
    assert keys == expected
    for s in manifest["sources"].values():
        assert s["meta"]["delta_path"] == "/".join(s["meta"]["dagster"]["asset_key"])


def test_silver_source_columns_match_the_topic_contract(manifest: dict[str, Any]) -> None:
    for contract in TOPICS.values():
        source = manifest["sources"][f"source.tidelake.silver.{contract.table_name}"]
        contract_columns = [*contract.bronze_schema().names, "_deliveries"]
        assert list(source["columns"]) == contract_columns, contract.name


def test_gold_sources_declare_the_gold_tables_schema(manifest: dict[str, Any]) -> None:
    from tidelake.transform import EVENTS_PER_HOUR_SCHEMA, EVENTS_PER_MINUTE_SCHEMA

    types = {"varchar": pa.string(), "bigint": pa.int64(), "integer": pa.int32()}
    types |= {"date": pa.date32(), "timestamptz": pa.timestamp("us", tz="UTC")}
    for name, schema in [
        ("events_per_minute", EVENTS_PER_MINUTE_SCHEMA),
        ("events_per_hour", EVENTS_PER_HOUR_SCHEMA),
    ]:
        source = manifest["sources"][f"source.tidelake.gold.{name}"]
        declared = {c: types[t] for c, t in source["meta"]["empty_schema"].items()}
        assert declared == {f.name: f.type for f in schema}, name
        assert list(source["columns"]) == schema.names


def test_dbt_assets_depend_on_the_silver_and_gold_asset_keys(
    dbt_assets_def: dg.AssetsDefinition,
) -> None:
    upstream = {k.to_user_string() for k in dbt_assets_def.dependency_keys} - {
        k.to_user_string() for k in dbt_assets_def.keys
    }
    assert upstream == {f"silver/{c.table_name}" for c in TOPICS.values()} | {
        "gold/events_per_hour"
    }
    assert {f"marts/{m}" for m in MARTS} <= {k.to_user_string() for k in dbt_assets_def.keys}
    assert set(dbt_assets_def.group_names_by_key.values()) == {"warehouse"}


def test_every_mart_has_dbt_tests_as_asset_checks(dbt_assets_def: dg.AssetsDefinition) -> None:
    checks: dict[str, set[str]] = {}
    for key in dbt_assets_def.check_keys:
        checks.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
    for mart in MARTS:
        assert f"unique_{mart}_date" in checks[f"marts/{mart}"] or mart == "sensor_hourly"
        assert len(checks[f"marts/{mart}"]) >= 5, mart
    assert "daily_kpis_conversion_rate_at_most_one" in checks["marts/daily_kpis"]


@pytest.mark.parametrize(
    ("tags", "window"),
    [
        ({}, None),
        ({"dagster/partition": "2026-12-02-01:00"}, (date(2026, 12, 2), date(2026, 12, 2))),
        ({"dagster/partition": "2026-12-02"}, (date(2026, 12, 2), date(2026, 12, 2))),
        (
            {
                "dagster/asset_partition_range_start": "2026-11-30-22:00",
                "dagster/asset_partition_range_end": "2026-12-02-01:00",
            },
            (date(2026, 11, 30), date(2026, 12, 2)),
        ),
        ({"dagster/partition": "not-a-time-partition"}, None),
    ],
)
def test_a_runs_partition_tags_give_the_day_window(
    tags: dict[str, str], window: tuple[date, date] | None
) -> None:
    assert window_from_tags(tags) == window


def test_dbt_vars_carry_absolute_paths_and_the_window_only_when_given(tmp_path: Path) -> None:
    wh = tmp_path / "w.duckdb"
    assert dbt_vars("/lake", wh, None) == {"lake_uri": "/lake", "warehouse_path": str(wh)}
    window = (date(2025, 1, 1), date(2025, 1, 2))
    assert dbt_vars("s3://b/p", wh, window)["min_date"] == "2025-01-01"
    assert dbt_vars("s3://b/p", wh, window)["max_date"] == "2025-01-02"


def test_a_current_manifest_is_not_parsed_again(tmp_path: Path) -> None:
    project = dbt_project()
    before = project.manifest_path.stat().st_mtime_ns
    assert ensure_manifest(project) == project.manifest_path
    assert project.manifest_path.stat().st_mtime_ns == before
    stamp = project.manifest_path.with_name(DIGEST_FILE).read_text()
    assert stamp == project_digest(project.project_dir)


def test_the_digest_changes_with_a_model_and_ignores_dbt_output(tmp_path: Path) -> None:
    copy = tmp_path / "dbt_project"
    shutil.copytree(REPO_DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    digest = project_digest(copy)
    (copy / "target").mkdir()
    (copy / "target" / "manifest.json").write_text("{}")
    assert project_digest(copy) == digest
    model = copy / "models" / "marts" / "daily_kpis.sql"
    model.write_text(model.read_text() + "\n-- changed\n")
    assert project_digest(copy) != digest


def test_a_missing_silver_table_reads_as_the_empty_silver_contract(plugin: ModuleType) -> None:
    empty = plugin.empty_relation({"topic": "shop.clicks"})
    assert empty.num_rows == 0
    assert empty.schema.names == [*TOPICS["shop.clicks"].bronze_schema().names, "_deliveries"]
    gold = plugin.empty_relation(
        {"empty_schema": {"events": "bigint", "window_start": "timestamptz"}}
    )
    assert gold.schema == pa.schema(
        [("events", pa.int64()), ("window_start", pa.timestamp("us", tz="UTC"))]
    )
    with pytest.raises(ValueError, match="empty_schema type"):
        plugin.empty_relation({"empty_schema": {"x": "hugeint"}})


def test_the_plugin_keeps_only_the_window_days(plugin: ModuleType) -> None:
    days = [date(2025, 3, d) for d in (1, 2, 3, 4)]
    dataset = pads.dataset(pa.table({"event_date": days, "n": [1, 2, 3, 4]}))
    kept = plugin.in_window(dataset, date(2025, 3, 2), date(2025, 3, 3)).to_table()
    assert kept.column("n").to_pylist() == [2, 3]
    assert plugin.in_window(dataset, None, None).count_rows() == 4
    assert plugin.window_date("None") is None and plugin.window_date("") is None
    assert plugin.window_date("2025-03-02") == date(2025, 3, 2)


def test_warehouse_connects_read_only_only_to_a_built_file(tmp_path: Path) -> None:
    wh = WarehouseResource(path=str(tmp_path / "sub" / "wh.duckdb"))
    with pytest.raises(FileNotFoundError, match="does not exist yet"):
        wh.connect()
    with wh.connect(read_only=False) as con:
        con.execute("create schema marts; create table marts.t as select 1 as x")
    with wh.connect() as con:
        assert con.sql("select x from marts.t").fetchall() == [(1,)]
        assert con.sql("select current_setting('TimeZone')").fetchall() == [("UTC",)]
        with pytest.raises(Exception, match="read-only"):
            con.execute("create table marts.u as select 1")


def test_warehouse_resource_reads_the_path_variable_only_when_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert warehouse_resource({}).path == ".tidelake/warehouse.duckdb"
    target = tmp_path / "x.duckdb"
    monkeypatch.setenv("TIDELAKE_WAREHOUSE_PATH", str(target))
    resource = warehouse_resource({"TIDELAKE_WAREHOUSE_PATH": str(target)})
    assert isinstance(resource.path, dg.EnvVar), "resolved at run time, never a stored value"
    with dg.build_resources({"warehouse": resource}) as built:
        assert built.warehouse.resolved_path() == target


@pytest.mark.slow  # one real `dbt parse` (~5 s)
def test_a_fresh_clone_gets_its_manifest_parsed_once_by_concurrent_loaders(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from dagster_dbt import DbtProject

    copy = tmp_path / "dbt_project"
    shutil.copytree(REPO_DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    project = DbtProject(project_dir=copy, profiles_dir=copy)
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: ensure_manifest(project), range(2)))
    assert paths == [project.manifest_path] * 2
    nodes = json.loads(project.manifest_path.read_text())["nodes"]
    assert {f"model.tidelake.{m}" for m in MARTS} <= set(nodes)
    assert (copy / "target" / DIGEST_FILE).read_text() == project_digest(copy)
