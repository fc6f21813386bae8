"""The local Dagster instance directory (``DAGSTER_HOME``) and its ``dagster.yaml``.

The instance Tidelake writes for local and test use:

* storage: Dagster's default sqlite storage under ``DAGSTER_HOME`` (nothing configured);
* runs go through the ``QueuedRunCoordinator`` with at most :data:`MAX_CONCURRENT_RUNS` in progress
  and **one ingestion run per topic**: runs tagged ``tidelake/ingest_topic=<topic>``
  (:data:`INGEST_TOPIC_TAG`) are limited to 1 per unique tag value. The engine stays correct if two
  race anyway; the limit just avoids pointless commit conflicts;
* run monitoring on (runs whose worker died are marked failed), telemetry off.

Limits use the ``concurrency: runs:`` section, the Dagster 1.13 home of ``max_concurrent_runs``
and ``tag_concurrency_limits`` (the same keys under ``run_coordinator.config`` are the older form
and may not be combined with it).

A ``dagster.yaml`` we wrote starts with :data:`MANAGED_HEADER` and is rewritten when its content is
outdated; a file without the header belongs to the user and is never touched.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

INGEST_TOPIC_TAG = "tidelake/ingest_topic"
"""Run tag carrying the logical topic of an ingestion run; the instance allows one run per value."""

DEFAULT_DAGSTER_HOME = Path(".tidelake") / "dagster"
"""``DAGSTER_HOME`` when neither a path nor the variable is given (relative to the cwd)."""

MAX_CONCURRENT_RUNS = 8
"""Six per-topic ingestion runs plus an all-topics run must not queue behind each other."""
MANAGED_HEADER = "# Managed by tidelake.dagster_home; delete this line to keep your own edits."


def dagster_instance_config(max_concurrent_runs: int = MAX_CONCURRENT_RUNS) -> dict[str, Any]:
    """The ``dagster.yaml`` content Tidelake wants, as a dict."""
    return {
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            # Micro-batch latency: look at the queue every second and launch runs in parallel
            # (the default 5 s poll and serial launches cost ~10 s per run under load).
            "config": {
                "dequeue_interval_seconds": 1,
                "dequeue_use_threads": True,
                "dequeue_num_workers": 4,
            },
        },
        "concurrency": {
            "runs": {
                "max_concurrent_runs": max_concurrent_runs,
                "tag_concurrency_limits": [
                    {
                        "key": INGEST_TOPIC_TAG,
                        "value": {"applyLimitPerUniqueValue": True},
                        "limit": 1,
                    }
                ],
            }
        },
        "run_monitoring": {"enabled": True},
        # Each Kafka sensor probes its topic (up to ~1 s); evaluate them in parallel, not in turn.
        "sensors": {"use_threads": True, "num_workers": 8},
        "telemetry": {"enabled": False},
    }


def dagster_yaml_text(max_concurrent_runs: int = MAX_CONCURRENT_RUNS) -> str:
    """The ``dagster.yaml`` file text: :data:`MANAGED_HEADER` then the YAML of the config."""
    body = yaml.safe_dump(dagster_instance_config(max_concurrent_runs), sort_keys=False)
    return f"{MANAGED_HEADER}\n{body}"


def resolve_dagster_home(path: Path | None = None) -> Path:
    """Absolute ``DAGSTER_HOME``: ``path``, else ``$DAGSTER_HOME``, else ``./.tidelake/dagster``."""
    if path is None:
        env_value = os.environ.get("DAGSTER_HOME", "").strip()
        path = Path(env_value) if env_value else DEFAULT_DAGSTER_HOME
    return path.expanduser().resolve()


def ensure_dagster_home(
    path: Path | None = None, max_concurrent_runs: int = MAX_CONCURRENT_RUNS
) -> Path:
    """Create the Dagster home directory and its ``dagster.yaml``; return the absolute home path.

    ``dagster.yaml`` is written when missing, or when it carries :data:`MANAGED_HEADER` and differs
    from :func:`dagster_yaml_text`. A file without the header is left as it is. The environment is
    not modified: export ``DAGSTER_HOME`` (or pass it to subprocesses) yourself.
    """
    home = resolve_dagster_home(path)
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "dagster.yaml"
    wanted = dagster_yaml_text(max_concurrent_runs)
    if config_file.exists():
        current = config_file.read_text(encoding="utf-8")
        if current == wanted:
            return home
        if not current.startswith(MANAGED_HEADER):
            logger.info("keeping user-managed %s", config_file)
            return home
        logger.info("updating outdated %s", config_file)
    tmp = config_file.with_name(f".dagster.yaml.{os.getpid()}.tmp")
    tmp.write_text(wanted, encoding="utf-8")
    tmp.replace(config_file)
    return home
