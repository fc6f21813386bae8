"""Table maintenance of the lake: compaction of closed partitions, checkpoints, vacuum.

:mod:`plan` (which partitions are closed and worth compacting), :mod:`lease` (one compactor
per table, kept in the Delta log), :mod:`table` (one table's pass), :mod:`lake` (every table),
:mod:`report` (what a pass did). Safe beside the appenders: see :mod:`tidelake.maintenance.table`.
"""

from __future__ import annotations

from tidelake.maintenance.lake import lake_tables, maintain_lake
from tidelake.maintenance.lease import LEASE_APP_ID, LeaseHeld
from tidelake.maintenance.report import MaintenanceReport, PartitionSkip
from tidelake.maintenance.table import (
    MIN_RETENTION_HOURS,
    MaintenanceError,
    maintain_table,
    maintenance_metadata,
)

__all__ = [
    "LEASE_APP_ID",
    "MIN_RETENTION_HOURS",
    "LeaseHeld",
    "MaintenanceError",
    "MaintenanceReport",
    "PartitionSkip",
    "lake_tables",
    "maintain_lake",
    "maintain_table",
    "maintenance_metadata",
]
