"""The warehouse resource: the DuckDB file dbt builds the marts into (TIDELAKE_WAREHOUSE_PATH)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from tidelake.settings import RefreshSettings

WAREHOUSE_PATH_VAR = "TIDELAKE_WAREHOUSE_PATH"
MARTS_SCHEMA = "marts"
"""Schema of the public warehouse tables (``marts.daily_kpis``, ...)."""


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse: dbt writes it, the API and the dashboard read ``marts.*`` from it.

    DuckDB allows one writing process at a time (or several read-only ones), so readers connect
    read-only and briefly; a reader that overlaps a dbt build gets DuckDB's lock error.
    """

    path: str = Field(
        default=RefreshSettings().warehouse_path,
        description=f"{WAREHOUSE_PATH_VAR}: the DuckDB file (relative to the working directory)",
    )

    def resolved_path(self) -> Path:
        """The absolute path of the DuckDB file (relative paths: against the working directory)."""
        return Path(self.path).expanduser().absolute()

    def connect(self, read_only: bool = True) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the session time zone UTC (days and hours are UTC).

        Raises:
            FileNotFoundError: ``read_only`` and the warehouse was never built.
        """
        path = self.resolved_path()
        if read_only and not path.exists():
            raise FileNotFoundError(
                f"warehouse {path} does not exist yet: materialize the dbt assets (or run "
                "`dbt build` in dbt_project/) first"
            )
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path), read_only=read_only)
        # After connecting, not in connect(config=...): only then is the built-in ICU loaded.
        con.execute("SET TimeZone = 'UTC'")
        return con


def warehouse_resource(env: Mapping[str, str] | None = None) -> WarehouseResource:
    """The warehouse resource from ``TIDELAKE_WAREHOUSE_PATH`` (an ``EnvVar`` when it is set, else
    the :class:`RefreshSettings` default), so definitions load with nothing set."""
    e = os.environ if env is None else env
    if e.get(WAREHOUSE_PATH_VAR, "").strip():
        return WarehouseResource(path=dg.EnvVar(WAREHOUSE_PATH_VAR))
    return WarehouseResource()
