"""Alerts: an optional JSON webhook (Slack-compatible ``text`` field).

The webhook URL is a secret (a Slack webhook's path *is* its credential). It reaches the resource
as ``dagster.EnvVar("TIDELAKE_ALERT_WEBHOOK_URL")``, so the UI shows the variable's name only;
the field is left out of the resource's ``repr``; and no log line or error message built here
holds more of it than :func:`redact_url` keeps (scheme, host and port).
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import dagster as dg
from pydantic import Field

log = logging.getLogger(__name__)

REDACTED = "<webhook>"
"""What a log line shows of a webhook URL that cannot even be reduced to scheme and host."""


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: never the path, query or user info, which hold the
    secret; :data:`REDACTED` when the URL does not parse that far."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def describe_error(exc: BaseException, timeout_seconds: float) -> str:
    """Why a delivery failed, from the error's type and codes, never its message.

    ``urllib`` puts the URL into some messages (``unknown url type: '…'``, ``nonnumeric port``),
    so only fixed text, HTTP status codes and the operating system's ``strerror`` are used.
    """
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return describe_error(exc.reason, timeout_seconds)
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_seconds:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__} ({exc.strerror})"
    if isinstance(exc, ValueError):
        return "invalid webhook URL"
    return type(exc).__name__


class AlertWebhookResource(dg.ConfigurableResource):
    """POSTs alert messages as JSON to ``url``; without a URL alerts are only logged."""

    url: str | None = Field(
        default=None,
        repr=False,  # the URL is the credential; keep it out of every repr and error message
        description="TIDELAKE_ALERT_WEBHOOK_URL (a secret: set it through the variable)",
    )
    timeout_seconds: float = Field(
        default=3.0,
        description="Socket timeout of the single delivery attempt (it runs in a sensor tick).",
    )

    def target(self) -> str | None:
        """The webhook as logs may show it (:func:`redact_url`), or None when none is set."""
        return redact_url(self.url) if self.url else None

    def send(self, payload: dict[str, Any]) -> bool:
        """POST ``payload`` once; return whether it was delivered (failures are logged, not raised).

        An alert that cannot be delivered must not fail the sensor that raised it, or the next
        failure would go unreported too. There is one attempt with a small timeout and no retry:
        the sensor thread must finish its tick, and the next alert is the next attempt.
        """
        if not self.url:
            return False
        target = redact_url(self.url)
        try:
            # Inside the try: an unusable URL raises ValueError with the URL in its message.
            request = urllib.request.Request(
                self.url,
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                status = int(response.status)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # No exc_info: a traceback would carry the same messages this avoids.
            log.warning(
                "alert webhook %s failed: %s", target, describe_error(exc, self.timeout_seconds)
            )
            return False
        if not 200 <= status < 300:
            log.warning("alert webhook %s answered HTTP %d", target, status)
            return False
        return True
