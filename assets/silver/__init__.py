"""Silver layer: ``bronze/<table>`` → ``silver/<table>`` (each logical event once), hourly
partitioned, with its checks."""

from assets.silver.assets import build_silver_asset, build_silver_assets, silver_key
from assets.silver.checks import (
    COMPLETE_VS_LEDGER,
    EVENT_ID_UNIQUE,
    EVENTS_BEFORE_PARTITIONS_START,
    MATCHES_BRONZE,
    PANDERA_SCHEMA,
    SILVER_CHECK_NAMES,
)

__all__ = [
    "COMPLETE_VS_LEDGER",
    "EVENTS_BEFORE_PARTITIONS_START",
    "EVENT_ID_UNIQUE",
    "MATCHES_BRONZE",
    "PANDERA_SCHEMA",
    "SILVER_CHECK_NAMES",
    "build_silver_asset",
    "build_silver_assets",
    "silver_key",
]
