"""Maintenance of every table of the lake: bronze, silver, gold and quarantine."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from deltalake.fs import DeltaStorageHandler

from tidelake.contracts import QUARANTINE_PATH, TopicContract
from tidelake.lake import Lake
from tidelake.maintenance.report import MaintenanceReport
from tidelake.maintenance.table import MIN_RETENTION_HOURS, MaintenanceError, maintain_table
from tidelake.settings import RefreshSettings

log = logging.getLogger(__name__)

GOLD_ROOT = "gold"


def lake_tables(lake: Lake, contracts: Sequence[TopicContract]) -> list[str]:
    """The existing tables maintenance covers: per topic bronze and silver, every gold table,
    and quarantine (in that order)."""
    wanted = [
        *(c.bronze_path for c in contracts),
        *(f"silver/{c.table_name}" for c in contracts),
        *gold_tables(lake),
        QUARANTINE_PATH,
    ]
    return [p for p in dict.fromkeys(wanted) if lake.open(p) is not None]


def gold_tables(lake: Lake) -> list[str]:
    """``gold/<name>`` for every Delta table directory under ``gold/`` (local or S3)."""
    try:
        handler = DeltaStorageHandler(lake.uri(GOLD_ROOT), dict(lake.storage_options))
        infos = pafs.PyFileSystem(handler).get_file_info(
            pafs.FileSelector("", recursive=False, allow_not_found=True)
        )
    except (DeltaError, OSError):  # no gold/ yet (deltalake raises TableNotFoundError locally)
        return []
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
    return [
        f"{GOLD_ROOT}/{n}"
        for n in names
        if DeltaTable.is_deltatable(lake.uri(f"{GOLD_ROOT}/{n}"), dict(lake.storage_options))
    ]


def maintain_lake(
    lake: Lake,
    contracts: Sequence[TopicContract],
    settings: RefreshSettings,
    *,
    now: datetime | None = None,
    retention_hours: int = MIN_RETENTION_HOURS,
    dry_run: bool = False,
) -> list[MaintenanceReport]:
    """Maintain every existing table (see :func:`lake_tables`); one table failing is reported
    in its report's ``error`` and does not stop the others.

    Partitions are closed after ``settings.lateness_horizon_hours``.

    Raises:
        MaintenanceError: ``retention_hours`` is below 7 days (checked before any table).
    """
    if retention_hours < MIN_RETENTION_HOURS:
        raise MaintenanceError(
            f"vacuum retention of {retention_hours} h refused: it must be at least "
            f"{MIN_RETENTION_HOURS} h (7 days)"
        )
    at = now or datetime.now(UTC)
    reports: list[MaintenanceReport] = []
    for path in lake_tables(lake, contracts):
        try:
            reports.append(
                maintain_table(
                    lake,
                    path,
                    now=at,
                    horizon_hours=settings.lateness_horizon_hours,
                    retention_hours=retention_hours,
                    dry_run=dry_run,
                )
            )
        except Exception as exc:
            log.exception("maintenance of %s failed", path)
            reports.append(
                MaintenanceReport(path=path, dry_run=dry_run, error=f"{type(exc).__name__}: {exc}")
            )
    return reports
