"""Where each Kafka partition stands: the Delta txn app_id that stores its resume offset."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def app_id(group: str, physical_topic: str, partition: int) -> str:
    """The Delta transaction app_id that stores the resume offset of one Kafka partition."""
    return f"{group}/{physical_topic}/{partition}"


def hour_partition_key(date: Any, hour: int) -> str:
    """Dagster hourly partition key (``%Y-%m-%d-%H:%M``) of an event_date/event_hour pair."""
    return f"{date.isoformat()}-{int(hour):02d}:00"
