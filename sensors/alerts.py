"""Run-failure alerts: log every failed run and POST it to the webhook when one is configured."""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
from typing import Any

import dagster as dg

from resources.alerts import AlertWebhookResource
from tidelake.dagster_home import INGEST_TOPIC_TAG

FAILURE_SENSOR_NAME = "run_failure_alert_sensor"


def failure_payload(
    job_name: str, run_id: str, message: str, tags: dict[str, str]
) -> dict[str, Any]:
    """The alert message: a Slack-style ``text`` line plus structured fields."""
    topic = tags.get(INGEST_TOPIC_TAG)
    where = f" (topic {topic})" if topic else ""
    return {
        "text": f"Tidelake run {run_id} of {job_name}{where} failed: {message}",
        "job_name": job_name,
        "run_id": run_id,
        "topic": topic,
        "error": message,
    }


def build_failure_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    """The run-failure sensor of this code location."""

    @dg.run_failure_sensor(
        name=FAILURE_SENSOR_NAME,
        default_status=default_status,
        minimum_interval_seconds=30,
        description="Logs failed runs and posts them to TIDELAKE_ALERT_WEBHOOK_URL if set.",
    )
    def _alert(context: dg.RunFailureSensorContext, alerts: AlertWebhookResource) -> None:
        run = context.dagster_run
        message = context.failure_event.message or "run failed"
        payload = failure_payload(run.job_name, run.run_id, message, dict(run.tags))
        context.log.error(payload["text"])
        if alerts.send(payload):
            context.log.info("alert posted to the webhook")

    return _alert
