"""Run alerts: one webhook post per failure streak, and one when the stream recovers.

A stream (see :mod:`sensors.runs`) that fails every 15 s for an hour is one incident, not 240:
the run-failure sensor posts the *first* failure of a streak (the stream's previous finished run
was not a failure) and logs the later ones at WARNING. The recovery sensor posts once when a
SUCCESS ends a streak, with the number of failed runs. Both derive the streak from run history,
so a restarted daemon, a lagging sensor or a streak that began before the sensor was turned on
give the same answers.
"""

# No `from __future__ import annotations`: Dagster inspects the decorated functions' annotations.
from collections.abc import Sequence
from typing import Any, NamedTuple

import dagster as dg

from resources.alerts import AlertWebhookResource
from sensors.runs import FINISHED, STREAK_LOOKBACK_RUNS, FailureStreak, failure_streak
from tidelake.dagster_home import INGEST_TOPIC_TAG

FAILURE_SENSOR_NAME = "run_failure_alert_sensor"
RECOVERY_SENSOR_NAME = "run_recovery_alert_sensor"
ALERT_INTERVAL_SECONDS = 30
"""Alerts must arrive within 60 s of the run's end; a tick every 30 s keeps that with margin."""
RECOVERY_BATCH_EVENTS = 200
"""RUN_SUCCESS events one recovery tick reads. Ingestion succeeds up to ~2 runs/s across topics;
200 per 30 s tick keeps up with room, and a backlog drains over the next ticks."""


class Recovery(NamedTuple):
    """A successful run that ended a failure streak of its stream."""

    run: dg.DagsterRun
    streak: FailureStreak


def stream_filter(run: dg.DagsterRun) -> dg.RunsFilter:
    """The finished runs of ``run``'s stream: same ingestion topic tag, otherwise same job."""
    topic = run.tags.get(INGEST_TOPIC_TAG)
    if topic:
        return dg.RunsFilter(tags={INGEST_TOPIC_TAG: topic}, statuses=FINISHED)
    return dg.RunsFilter(job_name=run.job_name, statuses=FINISHED)


def failures_before(
    instance: dg.DagsterInstance, run: dg.DagsterRun, limit: int = STREAK_LOOKBACK_RUNS
) -> FailureStreak:
    """The failure streak of ``run``'s stream just before ``run`` was created (one query)."""
    # `cursor=run_id` pages from that run backwards, newest first, excluding it.
    records = instance.get_run_records(filters=stream_filter(run), limit=limit, cursor=run.run_id)
    return failure_streak(records, more=len(records) >= limit)


ERROR_TEXT_LIMIT = 500
"""Characters of step errors an alert carries; the run's page in the UI has the rest."""


def failure_reason(context: dg.RunFailureSensorContext) -> str:
    """What broke: each failed step's root error (its first line), else the run's message.

    The run's own message only says which steps failed ("Steps failed: [...]"); the cause an
    on-call engineer needs is the innermost error of each step failure.
    """
    causes: list[str] = []
    for event in context.get_step_failure_events():
        error = getattr(event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None and error.message.strip():
            causes.append(f"{event.step_key}: {error.message.strip().splitlines()[0]}")
    text = "; ".join(causes) or context.failure_event.message or "run failed"
    return text if len(text) <= ERROR_TEXT_LIMIT else text[: ERROR_TEXT_LIMIT - 1] + "…"


def _where(tags: dict[str, str]) -> str:
    topic = tags.get(INGEST_TOPIC_TAG)
    return f" (topic {topic})" if topic else ""


def failure_payload(
    job_name: str, run_id: str, message: str, tags: dict[str, str], streak: int = 1
) -> dict[str, Any]:
    """The failure message: a Slack-style ``text`` line plus structured fields.

    ``streak`` is the number of consecutive failed runs of the stream, this one included.
    """
    nth = f" (failure {streak} in a row)" if streak > 1 else ""
    return {
        "text": f"Tidelake run {run_id} of {job_name}{_where(tags)} failed{nth}: {message}",
        "event": "failed",
        "job_name": job_name,
        "run_id": run_id,
        "topic": tags.get(INGEST_TOPIC_TAG),
        "error": message,
        "streak": streak,
    }


def recovery_payload(
    job_name: str, run_id: str, tags: dict[str, str], streak: FailureStreak
) -> dict[str, Any]:
    """The recovery message; ``streak`` is the failure streak the successful run ended."""
    return {
        "text": (
            f"Tidelake {job_name}{_where(tags)} recovered after {streak.label} failed run(s): "
            f"run {run_id} succeeded"
        ),
        "event": "recovered",
        "job_name": job_name,
        "run_id": run_id,
        "topic": tags.get(INGEST_TOPIC_TAG),
        "error": None,
        "streak": streak.length,
    }


def build_failure_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    """The run-failure sensor of this code location: posts the first failure of each streak."""

    @dg.run_failure_sensor(
        name=FAILURE_SENSOR_NAME,
        default_status=default_status,
        minimum_interval_seconds=ALERT_INTERVAL_SECONDS,
        description=(
            "Logs failed runs; posts the first failure of each streak (per ingestion topic, "
            "else per job) to TIDELAKE_ALERT_WEBHOOK_URL if set."
        ),
    )
    def _alert(context: dg.RunFailureSensorContext, alerts: AlertWebhookResource) -> None:
        run = context.dagster_run
        before = failures_before(context.instance, run)
        payload = failure_payload(
            run.job_name,
            run.run_id,
            failure_reason(context),
            dict(run.tags),
            streak=before.length + 1,
        )
        if before.runs:
            first = "" if before.capped else f", run {before.runs[-1].dagster_run.run_id}"
            context.log.warning(
                f"{payload['text']} — not posted: the streak was alerted at its first failure"
                f"{first}"
            )
            return
        context.log.error(payload["text"])
        if alerts.send(payload):
            context.log.info(f"alert posted to {alerts.target()}")

    return _alert


def _history_of(
    instance: dg.DagsterInstance, successes: Sequence[dg.RunRecord]
) -> list[dg.RunRecord]:
    """The stream's finished runs from its newest success in ``successes`` backwards."""
    newest = successes[-1]
    limit = STREAK_LOOKBACK_RUNS + len(successes)
    older = instance.get_run_records(
        filters=stream_filter(newest.dagster_run), limit=limit, cursor=newest.dagster_run.run_id
    )
    return [newest, *older]


def find_recoveries(
    instance: dg.DagsterInstance, successes: Sequence[dg.RunRecord]
) -> list[Recovery]:
    """The runs among ``successes`` (SUCCESS run records) that ended a failure streak.

    One history query per stream covers all of its successes in the batch; a success that falls
    outside that window (many failures between two successes of one batch) gets its own query.
    """
    streams: dict[tuple[str, str], list[dg.RunRecord]] = {}
    for record in sorted(successes, key=lambda r: r.storage_id):
        run = record.dagster_run
        topic = run.tags.get(INGEST_TOPIC_TAG)
        streams.setdefault(("topic", topic) if topic else ("job", run.job_name), []).append(record)
    found: list[Recovery] = []
    for records in streams.values():
        history = _history_of(instance, records)
        more = len(history) - 1 >= STREAK_LOOKBACK_RUNS + len(records)
        position = {r.dagster_run.run_id: i for i, r in enumerate(history)}
        for record in records:
            i = position.get(record.dagster_run.run_id)
            if i is None:
                streak = failures_before(instance, record.dagster_run)
            else:
                streak = failure_streak(history[i + 1 :], more=more)
            if streak.runs:
                found.append(Recovery(record.dagster_run, streak))
    return found


def _success_events(
    instance: dg.DagsterInstance, after_storage_id: int
) -> Sequence[dg.EventLogRecord]:
    return instance.fetch_run_status_changes(
        dg.RunStatusChangeRecordsFilter(
            event_type=dg.DagsterEventType.RUN_SUCCESS, after_storage_id=after_storage_id
        ),
        limit=RECOVERY_BATCH_EVENTS,
        ascending=True,
    ).records


def build_recovery_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    """The recovery sensor: posts once when a successful run ends a stream's failure streak.

    A plain sensor over RUN_SUCCESS events, its cursor the last event's storage id, rather than
    ``run_status_sensor(SUCCESS)``: that one handles at most 5 runs a tick
    (``DAGSTER_RUN_STATUS_SENSOR_PROCESS_LIMIT``) and writes an engine event into every run it
    handles, and ingestion succeeds many times a minute. This costs two queries per tick plus
    one per stream with successes, and writes nothing.
    """

    @dg.sensor(
        name=RECOVERY_SENSOR_NAME,
        default_status=default_status,
        minimum_interval_seconds=ALERT_INTERVAL_SECONDS,
        description=(
            "Posts one 'recovered after N failed runs' message to TIDELAKE_ALERT_WEBHOOK_URL "
            "when a successful run ends a failure streak."
        ),
    )
    def _recovered(
        context: dg.SensorEvaluationContext, alerts: AlertWebhookResource
    ) -> dg.SensorResult:
        instance = context.instance
        if context.cursor is None:
            # Like Dagster's run-status sensors: start at the newest event, never replay history.
            newest = instance.fetch_run_status_changes(
                dg.DagsterEventType.RUN_SUCCESS, limit=1
            ).records
            start = newest[0].storage_id if newest else -1
            return dg.SensorResult(skip_reason=f"starting after event {start}", cursor=str(start))
        events = _success_events(instance, int(context.cursor))
        if not events:
            return dg.SensorResult(skip_reason="no new successful runs", cursor=context.cursor)
        run_ids = list({e.event_log_entry.run_id for e in events})
        successes = [
            r
            for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=run_ids))
            if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        ]
        recoveries = find_recoveries(instance, successes)
        for recovery in recoveries:
            run = recovery.run
            payload = recovery_payload(run.job_name, run.run_id, dict(run.tags), recovery.streak)
            context.log.info(payload["text"])
            if alerts.send(payload):
                context.log.info(f"recovery posted to {alerts.target()}")
        cursor = str(events[-1].storage_id)
        return dg.SensorResult(
            skip_reason=f"{len(events)} successful run(s), {len(recoveries)} recovery(ies)",
            cursor=cursor,
        )

    return _recovered


def build_alert_sensors(default_status: dg.DefaultSensorStatus) -> list[dg.SensorDefinition]:
    """Both alert sensors of this code location: failures (once per streak) and recoveries."""
    return [build_failure_sensor(default_status), build_recovery_sensor(default_status)]
