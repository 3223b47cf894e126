"""Sensors: new price files start a run; a failed run writes an alert that says why.

A nightly run that fails at 3 a.m. must say why by morning: the alert names the run, the
failed steps (assets) and the first line of each error, in ``<home>/alerts/`` (one JSON file per
failure plus a line in ``alerts.log``) and, when ``ALPHAFORGE_ALERT_WEBHOOK`` is set, as a JSON
POST to that URL.
"""

import glob
import json
import os
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from dagster import (
    ConfigurableResource,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from pipelines.atomic import write_atomic


class AlertResource(ConfigurableResource):
    """Where alerts go: files under ``alert_dir`` always, a webhook when ``webhook_url`` is set."""

    alert_dir: str
    webhook_url: str | None = None
    timeout_s: float = 10.0
    # environment variables whose values never leave in an alert (masked as ***)
    redact: list[str] = []

    def send(self, alert: dict) -> Path:
        alert = json.loads(mask(json.dumps(alert), secret_values(self.redact)))
        folder = Path(self.alert_dir)
        name = f"{alert['time'].replace(':', '').replace('-', '')}-{alert['run_id'][:8]}.json"
        path = write_atomic(folder / name, lambda f: f.write(json.dumps(alert, indent=2).encode()))
        with (folder / "alerts.log").open("a") as log:
            log.write(f"{alert['time']} run {alert['run_id']} failed: {alert['summary']}\n")
        if self.webhook_url:
            request = urllib.request.Request(
                self.webhook_url,
                data=json.dumps(alert).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 (configured URL)
                response.read()
        return path


def secret_values(names: list[str], environ=os.environ) -> list[str]:
    """The values of the variables ``names`` and, for URLs among them, their password and
    credential parameters too (a message may quote a part of a URL): longest first."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    values = set()
    for name in names:
        value = environ.get(name) or ""
        values.add(value)
        if "://" in value:
            try:
                parts = urlsplit(value)
                values |= {parts.password or "", unquote(parts.password or "")}
                values |= {v for _, v in parse_qsl(parts.query)}
            except ValueError:
                pass
    return sorted((v for v in values if len(v) >= 6), key=len, reverse=True)


def mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***").replace(json.dumps(secret)[1:-1], "***")
    return text


def innermost_error(error):
    """The user's own exception inside Dagster's step-execution or resource-init wrapper (or
    ``error`` itself)."""
    wrappers = ("DagsterExecutionStepExecutionError", "DagsterResourceFunctionError")
    while (
        error is not None and error.cause is not None and any(w in error.cls_name for w in wrappers)
    ):
        error = error.cause
    return error


def failure_alert(context: RunFailureSensorContext) -> dict:
    """What failed and why, from the run's step-failure events."""
    steps = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            # a dagster.Failure raised by an asset: its description is the whole story
            steps.append(
                {"step": event.step_key, "error": data.user_failure_data.description[:4000]}
            )
            continue
        error = innermost_error(data.error)
        message = (
            error.message.strip().splitlines()[0]
            if error and error.message.strip()
            else "unknown error"
        )
        steps.append({"step": event.step_key, "error": message})
    run = context.dagster_run
    summary = "; ".join(f"{s['step']}: {' '.join(s['error'].split())}" for s in steps) or (
        context.failure_event.message or "run failed"
    )
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run.run_id,
        "job": run.job_name,
        "failed_steps": steps,
        "summary": summary,
        "tags": dict(run.tags),
    }


@run_failure_sensor(
    name="alert_on_run_failure",
    description="Writes an alert file (and posts to ALPHAFORGE_ALERT_WEBHOOK) for every failed run.",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def alert_on_run_failure(context: RunFailureSensorContext, alerts: AlertResource) -> None:
    path = alerts.send(failure_alert(context))
    context.log.info(f"alert written to {path}")


def new_files_sensor(job_name: str, pattern: str | None):
    """A sensor that requests ``job_name`` when a file matching ``pattern`` appears or changes.

    The cursor is the JSON map of path -> modification time already seen, so each new or
    rewritten file triggers one run (its run key is the file state) and nothing triggers twice.
    """

    @sensor(
        name="new_price_files_sensor",
        job_name=job_name,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        description=f"Runs {job_name} when price files matching the experiment's data.path appear or change.",
    )
    def new_price_files_sensor(context: SensorEvaluationContext):
        if not pattern:
            return SkipReason("data.source is 'bundled': no user data directory to watch")
        seen = json.loads(context.cursor) if context.cursor else {}
        current = {
            p: os.path.getmtime(p)
            for p in sorted(glob.glob(os.path.expanduser(pattern)))
            if os.path.isfile(p)
        }
        changed = sorted(p for p, mtime in current.items() if seen.get(p) != mtime)
        if not changed:
            return SkipReason(f"no new or changed file matches {pattern}")
        key = ",".join(f"{Path(p).name}@{current[p]:.0f}" for p in changed)
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=key,
                    tags={"alphaforge/trigger": "new_price_files", "alphaforge/files": key[:200]},
                )
            ],
            cursor=json.dumps(current),
        )

    return new_price_files_sensor
