"""Alert sensors on a real Dagster instance, posting to a real HTTP server on loopback.

Runs are real: a one-op job executed in process, failing or succeeding by config, so the run
records, their statuses and the RUN_FAILURE / RUN_SUCCESS events are the ones the daemon sees.
Sensors are evaluated through ``evaluate_tick`` (the daemon's entry point), cursors included.
"""

# No `from __future__ import annotations`: Dagster inspects the op's config annotation.
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import dagster as dg
import pytest

from resources.alerts import REDACTED, AlertWebhookResource, redact_url
from sensors import (
    FAILURE_SENSOR_NAME,
    RECOVERY_SENSOR_NAME,
    build_alert_sensors,
    failure_payload,
    recovery_payload,
)
from sensors.runs import STREAK_LOOKBACK_RUNS, failure_streak
from tidelake.dagster_home import INGEST_TOPIC_TAG

SECRET = "T0TIDE/B0LAKE/s3cr3tW3bh00kT0ken"
"""The part of a Slack webhook URL that is the credential."""
SECRET_PATH = f"/services/{SECRET}"
TOPIC = "shop.clicks"


class Webhook:
    """A loopback HTTP server that records JSON posts, answering 500 to the next ``fail_next``."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_next = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.fail_next > 0:
                    hook.fail_next -= 1
                    self.send_response(500)
                else:
                    hook.received.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    hook.thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()


@pytest.fixture
def refused_url() -> str:
    """A loopback URL nothing listens on (the port was just bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET_PATH}"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


class Outcome(dg.Config):
    fail: bool


@dg.op
def ingest_step(config: Outcome) -> None:
    if config.fail:
        raise RuntimeError("broker unreachable")


@dg.job(name="ingest_shop_clicks")
def ingest_job() -> None:
    ingest_step()


@dg.job(name="refresh_gold")
def other_job() -> None:
    ingest_step()


def run(
    instance: dg.DagsterInstance,
    fail: bool,
    topic: str | None = TOPIC,
    job: dg.JobDefinition = ingest_job,
) -> dg.DagsterRun:
    result = job.execute_in_process(
        instance=instance,
        run_config={"ops": {"ingest_step": {"config": {"fail": fail}}}},
        tags={INGEST_TOPIC_TAG: topic} if topic else {},
        raise_on_error=False,
    )
    assert result.success is not fail
    return result.dagster_run


class Sensors:
    """Both alert sensors of one instance, ticked like the daemon does, cursors kept."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        url: str | None,
        logs: pytest.LogCaptureFixture | None = None,
    ) -> None:
        self.instance = instance
        self.logs = logs
        self.resources = {"alerts": AlertWebhookResource(url=url, timeout_seconds=2)}
        self.defs = {s.name: s for s in build_alert_sensors(dg.DefaultSensorStatus.RUNNING)}
        self.cursors: dict[str, str | None] = dict.fromkeys(self.defs)
        self.tick_all()  # the first tick only places the cursors at the newest event

    def tick(self, name: str) -> dg.SensorResult | Any:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursors[name], resources=self.resources
        )
        if self.logs is not None:
            # The sensor's logger is Dagster's own (the daemon stores it with the tick) and does
            # not propagate to the root logger that caplog hears.
            context.log.addHandler(self.logs.handler)
        data = self.defs[name].evaluate_tick(context)
        self.cursors[name] = data.cursor
        return data

    def tick_all(self) -> None:
        for name in self.defs:
            self.tick(name)
        # A run-failure sensor handles at most 5 runs a tick; tests stay below, a second tick
        # proves nothing is handled twice.
        for name in self.defs:
            self.tick(name)


@pytest.fixture(params=["in-memory", "sqlite"])
def instance(request: pytest.FixtureRequest) -> Iterator[dg.DagsterInstance]:
    """Both storages: in-memory, and the run-sharded sqlite files of a local DAGSTER_HOME, whose
    run-status events carry storage ids of their own index shard."""
    if request.param == "in-memory":
        yield dg.DagsterInstance.ephemeral()
    else:
        with dg.instance_for_test() as sqlite_instance:
            yield sqlite_instance


def test_a_streak_of_four_failures_posts_once_then_one_recovery(
    instance: dg.DagsterInstance, webhook: Webhook, logs: pytest.LogCaptureFixture
) -> None:
    sensors = Sensors(instance, webhook.url, logs)
    failed = [run(instance, fail=True) for _ in range(4)]
    logs.clear()

    sensors.tick_all()

    [alert] = webhook.received
    assert alert["event"] == "failed"
    assert alert["run_id"] == failed[0].run_id
    assert alert["streak"] == 1
    assert alert["topic"] == TOPIC
    assert "broker unreachable" in alert["text"]
    later = [r for r in logs.records if "not posted" in r.getMessage()]
    assert [r.levelno for r in later] == [logging.WARNING] * 3
    assert all(
        f"failure {n} in a row" in r.getMessage() for n, r in zip((2, 3, 4), later, strict=True)
    )

    succeeded = run(instance, fail=False)
    sensors.tick_all()
    run(instance, fail=False)
    sensors.tick_all()

    assert len(webhook.received) == 2
    recovered = webhook.received[1]
    assert recovered["event"] == "recovered"
    assert recovered["run_id"] == succeeded.run_id
    assert recovered["streak"] == 4
    assert "recovered after 4 failed run(s)" in recovered["text"]


def test_a_failure_after_a_recovery_starts_a_new_streak(webhook: Webhook) -> None:
    instance = dg.DagsterInstance.ephemeral()
    sensors = Sensors(instance, webhook.url)

    first = run(instance, fail=True)
    run(instance, fail=False)
    second = run(instance, fail=True)
    sensors.tick_all()

    failures = [p for p in webhook.received if p["event"] == "failed"]
    assert [p["run_id"] for p in failures] == [first.run_id, second.run_id]
    assert [p["streak"] for p in webhook.received if p["event"] == "recovered"] == [1]


def test_streaks_are_per_topic_for_ingestion_and_per_job_otherwise(webhook: Webhook) -> None:
    instance = dg.DagsterInstance.ephemeral()
    sensors = Sensors(instance, webhook.url)

    run(instance, fail=True, topic="shop.clicks")
    run(instance, fail=True, topic="shop.searches")  # same job, other topic: its own streak
    run(instance, fail=True, topic="shop.clicks")
    run(instance, fail=True, topic=None, job=other_job)
    run(instance, fail=True, topic=None, job=other_job)
    sensors.tick_all()

    posted = [(p["job_name"], p["topic"]) for p in webhook.received]
    assert posted == [
        ("ingest_shop_clicks", "shop.clicks"),
        ("ingest_shop_clicks", "shop.searches"),
        ("refresh_gold", None),
    ]


def test_a_cancelled_run_does_not_break_an_alert_streak(webhook: Webhook) -> None:
    instance = dg.DagsterInstance.ephemeral()
    sensors = Sensors(instance, webhook.url)

    run(instance, fail=True)
    instance.add_run(
        dg.DagsterRun(
            job_name="ingest_shop_clicks",
            status=dg.DagsterRunStatus.CANCELED,
            tags={INGEST_TOPIC_TAG: TOPIC},
        )
    )
    run(instance, fail=True)
    sensors.tick_all()

    assert [p["streak"] for p in webhook.received] == [1]


def test_the_alert_sensor_logs_never_show_the_webhook_url_when_delivery_fails(
    refused_url: str, logs: pytest.LogCaptureFixture
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    sensors = Sensors(instance, refused_url, logs)
    run(instance, fail=True)
    run(instance, fail=False)

    sensors.tick_all()

    host = refused_url.removesuffix(SECRET_PATH)
    assert logs.text.count(f"alert webhook {host} failed") == 2  # the failure and the recovery
    assert "RuntimeError: broker unreachable" in logs.text  # the failure itself is still logged
    assert_no_secret(logs)


def assert_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        rendered = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for part in SECRET.split("/"):
            assert part not in rendered, record


def test_a_delivery_answered_with_500_logs_host_and_status_but_no_secret(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.fail_next = 1
    alerts = AlertWebhookResource(url=webhook.url, timeout_seconds=2)

    with caplog.at_level(logging.DEBUG):
        first = alerts.send({"text": "run failed"})
        second = alerts.send({"text": "run failed again"})

    assert not first
    assert second  # one attempt per alert: the next alert goes through
    assert webhook.received == [{"text": "run failed again"}]
    assert "HTTP 500" in caplog.text
    assert f"127.0.0.1:{webhook.server.server_address[1]}" in caplog.text
    assert_no_secret(caplog)


def test_a_refused_connection_logs_the_reason_but_no_secret(
    refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        assert not AlertWebhookResource(url=refused_url, timeout_seconds=2).send({"text": "x"})

    assert "ConnectionRefusedError" in caplog.text
    assert_no_secret(caplog)


@pytest.mark.parametrize(
    "url",
    [
        f"htps:/hooks.example.com{SECRET_PATH}",  # unknown scheme: urllib echoes the URL
        f"http://hooks.example.com:{SECRET.split('/')[2]}{SECRET_PATH}",  # bad port: echoed too
        f"{SECRET_PATH}",  # no scheme at all
    ],
)
def test_an_unusable_url_fails_without_echoing_it(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        assert not AlertWebhookResource(url=url, timeout_seconds=1).send({"text": "x"})

    assert "alert webhook" in caplog.text
    assert_no_secret(caplog)


def test_redaction_keeps_scheme_host_and_port_only() -> None:
    assert redact_url(f"https://hooks.slack.com{SECRET_PATH}") == "https://hooks.slack.com"
    assert redact_url("https://user:pw@alerts.example.com:8443/p?token=t") == (
        "https://alerts.example.com:8443"
    )
    assert redact_url("http://h:notaport/x") == REDACTED
    assert redact_url(SECRET_PATH) == REDACTED


def test_the_resource_repr_hides_the_url() -> None:
    alerts = AlertWebhookResource(url=f"https://hooks.slack.com{SECRET_PATH}")

    assert SECRET not in repr(alerts)
    assert SECRET not in str(alerts)
    assert alerts.target() == "https://hooks.slack.com"


def test_the_definitions_show_only_the_variable_name_of_the_webhook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline_defs.definitions import build_definitions

    url = f"https://hooks.slack.com{SECRET_PATH}"
    monkeypatch.setenv("TIDELAKE_ALERT_WEBHOOK_URL", url)

    defs = build_definitions()

    assert defs.resources is not None
    resource = defs.resources["alerts"]
    definition = defs.get_repository_def().get_top_level_resources()["alerts"]
    shown = json.dumps(definition.config_schema.default_value, default=repr)  # what the UI lists
    assert "TIDELAKE_ALERT_WEBHOOK_URL" in shown
    assert SECRET not in shown
    assert SECRET not in repr(resource)
    # At run time the reference resolves to the URL, and the live resource still hides it.
    with dg.build_resources({"alerts": resource}) as live:
        assert live.alerts.url == url
        assert SECRET not in repr(live.alerts)


def test_the_failure_payload_names_run_job_topic_and_streak() -> None:
    payload = failure_payload(
        "ingest_shop_clicks", "abc123", "boom", {INGEST_TOPIC_TAG: TOPIC}, streak=3
    )

    assert payload["topic"] == TOPIC
    assert payload["streak"] == 3
    assert payload["event"] == "failed"
    for part in ("abc123", "ingest_shop_clicks", "boom", "failure 3 in a row"):
        assert part in payload["text"]


def test_a_recovery_after_more_runs_than_the_look_back_says_so() -> None:
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(STREAK_LOOKBACK_RUNS + 3):
        instance.add_run(dg.DagsterRun(job_name="refresh_gold", status=dg.DagsterRunStatus.FAILURE))
    records = instance.get_run_records(limit=STREAK_LOOKBACK_RUNS)

    streak = failure_streak(records, more=True)
    payload = recovery_payload("refresh_gold", "r1", {}, streak)

    assert payload["topic"] is None
    assert payload["streak"] == STREAK_LOOKBACK_RUNS
    assert f"recovered after {STREAK_LOOKBACK_RUNS}+ failed run(s)" in payload["text"]


def test_both_alert_sensors_build_with_their_alert_resource() -> None:
    sensors = {s.name: s for s in build_alert_sensors(dg.DefaultSensorStatus.RUNNING)}

    assert set(sensors) == {FAILURE_SENSOR_NAME, RECOVERY_SENSOR_NAME}
    assert all("alerts" in s.required_resource_keys for s in sensors.values())
