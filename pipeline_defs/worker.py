"""Wiring of the ingestion worker (``tidelake ingest --follow``) to Dagster and the alert webhook.

The worker runs outside any Dagster run, so each batch it commits is recorded on the instance of
``DAGSTER_HOME`` as runless events (:func:`assets.bronze.ingest.batch_events`): the bronze and
quarantine materializations with the same metadata an asset run records, and the bronze checks'
evaluations. The UI then shows the worker's batches in the asset's history, lineage, partitions
and check results as it shows runs' materializations, and downstream sensors see them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from assets.bronze.ingest import batch_events
from resources.alerts import AlertWebhookResource
from tidelake.contracts import TopicContract
from tidelake.dagster_home import ensure_dagster_home
from tidelake.ingest.report import BatchReport
from tidelake.quality.outcome import CheckOutcome

log = logging.getLogger(__name__)


class DagsterBatchRecorder:
    """Records each worker batch as runless events on a Dagster instance."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DagsterBatchRecorder | None:
        """The recorder of ``DAGSTER_HOME``'s instance, or None when it is not set.

        A home that does not exist yet is created with Tidelake's ``dagster.yaml``, as
        ``tidelake dev`` does: the worker may start before the webserver and the daemon.
        """
        home = (os.environ if env is None else env).get("DAGSTER_HOME", "").strip()
        if not home:
            return None
        return cls(dg.DagsterInstance.from_config(str(ensure_dagster_home(Path(home)))))

    def __call__(
        self, contract: TopicContract, report: BatchReport, outcomes: Mapping[str, CheckOutcome]
    ) -> None:
        for event in batch_events(contract, report, dict(outcomes)):
            self.instance.report_runless_asset_event(event)

    def close(self) -> None:
        self.instance.dispose()


def alert_sender(env: Mapping[str, str] | None = None) -> Any:
    """``payload -> delivered`` through ``TIDELAKE_ALERT_WEBHOOK_URL``; only logs without it."""
    url = (os.environ if env is None else env).get("TIDELAKE_ALERT_WEBHOOK_URL", "").strip()
    webhook = AlertWebhookResource(url=url or None)

    def send(payload: dict[str, Any]) -> bool:
        log.warning("alert: %s", payload["text"])
        return webhook.send(payload)

    return send
