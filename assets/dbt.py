"""The warehouse: the dbt project ``dbt_project/`` as Dagster assets (dagster-dbt).

One cached :class:`DbtProject`; its manifest is made by ``dbt parse`` the first time definitions
load and again only when a project file (or the dbt / dagster-dbt version) changes, so importing
``pipeline_defs.definitions`` in a fresh clone needs no preparation step and no network. dbt
sources carry ``meta.dagster.asset_key`` = the silver/gold asset keys, so the marts sit downstream
of the lake assets; dbt tests become asset checks (dagster-dbt's default).

A run builds the day window of its partition range (run tags), passed to dbt as ``--vars``; a run
without a partition range rebuilds every model in full (see ``dbt_project/README.md``).
"""

# No `from __future__ import annotations`: Dagster inspects the decorated function's annotations.
import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from resources.lake import LakeResource
from resources.warehouse import WarehouseResource

DBT_RESOURCE_KEY = "dbt"
WAREHOUSE_GROUP = "warehouse"
DBT_PROJECT_DIR_VAR = "TIDELAKE_DBT_PROJECT_DIR"
"""Where the dbt project lives if not beside the code (an installed package has none)."""
REPO_DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
DIGEST_FILE = "tidelake_manifest.sha256"
"""Written beside manifest.json: the digest of the project files the manifest was parsed from."""

# Partition tags of a run: a single partition, or the range of a single-run backfill.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
WINDOW_TAG = "tidelake/dbt_window"
"""``YYYY-MM-DD..YYYY-MM-DD``: the days an unpartitioned ``refresh_warehouse`` run rebuilds."""

_DIGEST_SUFFIXES = {".sql", ".yml", ".yaml", ".py", ".csv", ".md"}
_NOT_PROJECT_DIRS = {"target", "logs", "dbt_packages", "__pycache__"}


def dbt_executable() -> str:
    """The venv's ``dbt`` next to the running Python (PATH may not include the venv)."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def dbt_project_dir() -> Path:
    """``TIDELAKE_DBT_PROJECT_DIR`` if set, else ``dbt_project/`` of the repository."""
    override = os.environ.get(DBT_PROJECT_DIR_VAR, "").strip()
    return Path(override).absolute() if override else REPO_DBT_PROJECT_DIR


def project_digest(project_dir: Path) -> str:
    """Digest of everything ``dbt parse`` reads: the project's source files and the versions of
    dbt-core, dbt-duckdb and dagster-dbt (a manifest of another version may not load)."""
    h = hashlib.sha256()
    for package in ("dbt-core", "dbt-duckdb", "dagster-dbt"):
        h.update(f"{package}=={version(package)}\n".encode())
    files = sorted(
        p
        for p in project_dir.rglob("*")
        if p.is_file()
        and p.suffix in _DIGEST_SUFFIXES
        and not _NOT_PROJECT_DIRS & set(p.relative_to(project_dir).parts[:-1])
    )
    for path in files:
        h.update(path.relative_to(project_dir).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An inter-process lock: code servers, run workers and tests may load definitions at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _manifest_is_current(project: DbtProject, digest: str) -> bool:
    stamp = project.manifest_path.with_name(DIGEST_FILE)
    return project.manifest_path.exists() and stamp.exists() and stamp.read_text().strip() == digest


def ensure_manifest(project: DbtProject) -> Path:
    """Make ``manifest.json`` current: run ``dbt parse`` unless it was parsed from these files.

    Parsing needs neither the lake nor the warehouse nor a network (no dbt packages); a current
    manifest costs only the digest. A read-only deployment ships the manifest and its digest
    (``dbt parse`` at image build), so nothing is written at load time.

    Raises:
        RuntimeError: ``dbt parse`` failed (its output is in the message).
    """
    digest = project_digest(project.project_dir)
    if _manifest_is_current(project, digest):
        return project.manifest_path
    target = project.manifest_path.parent
    with _exclusive(target.with_name(f".{target.name}.lock")):
        if _manifest_is_current(project, digest):  # another process parsed meanwhile
            return project.manifest_path
        env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        env.pop("DBT_TARGET_PATH", None)
        result = subprocess.run(
            [
                dbt_executable(),
                "parse",
                "--quiet",
                "--project-dir",
                str(project.project_dir),
                "--profiles-dir",
                str(project.profiles_dir),
                "--target-path",
                str(target),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not project.manifest_path.exists():
            raise RuntimeError(
                f"dbt parse of {project.project_dir} failed (exit {result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        stamp = project.manifest_path.with_name(DIGEST_FILE)
        partial = stamp.with_suffix(".tmp")
        partial.write_text(digest)
        partial.replace(stamp)
    return project.manifest_path


@functools.cache
def dbt_project() -> DbtProject:
    """The warehouse's dbt project, with a current manifest (parsed at most once per change)."""
    directory = dbt_project_dir()
    project = DbtProject(project_dir=directory, profiles_dir=directory)
    ensure_manifest(project)
    return project


class TidelakeDbtTranslator(DagsterDbtTranslator):
    """dbt nodes → Dagster assets: default keys (sources: their ``meta.dagster.asset_key``, i.e.
    ``silver/<table>`` / ``gold/<name>``; models: ``<schema>/<name>``, e.g.
    ``marts/daily_kpis``), all in the ``warehouse`` group."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return WAREHOUSE_GROUP


def _partition_date(key: str | None) -> date | None:
    """The UTC day of an hourly (``2026-12-02-01:00``) or daily (``2026-12-02``) partition key."""
    if not key:
        return None
    try:
        return date.fromisoformat(key[:10])
    except ValueError:
        return None


def window_from_tags(tags: Mapping[str, str]) -> tuple[date, date] | None:
    """The day window ``(min_date, max_date)`` of a run's partition tags, or None (full build).

    Rule: the ``tidelake/dbt_window`` tag (the warehouse sensor's runs) names the days; a
    single-run backfill covers its range's days; a one-partition run covers that partition's
    day; every day is rebuilt whole, because a day's KPIs need all of its hours.
    """
    window = tags.get(WINDOW_TAG, "")
    if ".." in window:
        lo, hi = (_partition_date(part) for part in window.split("..", 1))
        if lo is not None and hi is not None:
            return (min(lo, hi), max(lo, hi))
    start = _partition_date(tags.get(RANGE_START_TAG) or tags.get(PARTITION_TAG))
    end = _partition_date(tags.get(RANGE_END_TAG) or tags.get(PARTITION_TAG))
    if start is None or end is None:
        return None
    return (min(start, end), max(start, end))


def dbt_vars(
    lake_uri: str, warehouse_path: Path, window: tuple[date, date] | None
) -> dict[str, str]:
    """The ``--vars`` of a build. Paths are absolute because dbt runs inside ``dbt_project/``."""
    out = {"lake_uri": lake_uri, "warehouse_path": str(warehouse_path)}
    if window is not None:
        out["min_date"], out["max_date"] = window[0].isoformat(), window[1].isoformat()
    return out


def build_dbt_assets(
    partitions_def: dg.PartitionsDefinition | None = None,
) -> list[dg.AssetsDefinition]:
    """The dbt models as assets (staging + marts) with their dbt tests as asset checks.

    Needs resources ``dbt`` (:func:`dbt_resource`), ``lake`` (``LakeResource``) and
    ``warehouse`` (``WarehouseResource``). Unpartitioned by default: a run with partition tags
    builds the days of its range, any other run rebuilds in full.
    """
    project = dbt_project()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        name="warehouse_dbt",
        dagster_dbt_translator=TidelakeDbtTranslator(),
        partitions_def=partitions_def,
    )
    def warehouse_dbt(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        lake: LakeResource,
        warehouse: WarehouseResource,
    ) -> Iterator[Any]:
        """dbt build of the selected warehouse models and tests over the lake's silver/gold."""
        window = window_from_tags(context.run.tags)
        path = warehouse.resolved_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        build_vars = dbt_vars(lake.lake().root, path, window)
        context.log.info(
            "dbt build, days %s" % (f"{window[0]}..{window[1]}" if window else "all (full)")
        )
        invocation = dbt.cli(["build", "--vars", json.dumps(build_vars)], context=context)
        yield from invocation.stream()
        # Each invocation gets its own target dir (~4 MB); keep only failed ones, for debugging.
        shutil.rmtree(invocation.target_path, ignore_errors=True)

    return [warehouse_dbt]


def dbt_resource() -> DbtCliResource:
    """The ``dbt`` resource: the project above, run with the venv's dbt executable."""
    return DbtCliResource(project_dir=dbt_project(), dbt_executable=dbt_executable())
