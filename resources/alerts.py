"""Failure alerts: an optional JSON webhook (Slack-compatible ``text`` field)."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

import dagster as dg
from pydantic import Field

log = logging.getLogger(__name__)


class AlertWebhookResource(dg.ConfigurableResource):
    """POSTs alert messages as JSON to ``url``; without a URL alerts are only logged."""

    url: str | None = Field(default=None, description="TIDELAKE_ALERT_WEBHOOK_URL")
    timeout_seconds: float = 5.0

    def send(self, payload: dict[str, Any]) -> bool:
        """POST ``payload``; return whether it was delivered (failures are logged, not raised).

        An alert that cannot be delivered must not fail the sensor that raised it, or the next
        failure would go unreported too.
        """
        if not self.url:
            return False
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return 200 <= int(response.status) < 300
        except OSError as exc:
            log.warning("alert webhook %s failed: %s", self.url, exc)
            return False
