"""Operating it nightly: the new-file sensor, the failure alert (file + webhook on a local HTTP
server) and a failed ingest that leaves the last good data in place."""

import hashlib
import json

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    RunRequest,
    SensorResult,
    SkipReason,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
)
from fakes import webhook_stub

from pipelines.definitions import JOB, definitions_from_env
from pipelines.sensors import AlertResource, alert_on_run_failure
from pipelines.settings import load_settings, prepare_home

pytestmark = [pytest.mark.integration]


@pytest.fixture
def webhook():
    with webhook_stub(decode=json.loads) as (url, received):
        yield f"{url}/alert", received


def _evaluate(sensor, instance, cursor):
    return sensor(build_sensor_context(instance=instance, cursor=cursor))


def test_bad_file_in_watched_directory_fails_alerts_and_keeps_last_good_data(tmp_path, webhook):
    url, received = webhook
    watched = tmp_path / "incoming"
    watched.mkdir()
    (watched / "good.csv").write_text(
        "symbol,date,close\nAAA,2020-01-02,10\nAAA,2020-01-03,11\nBBB,2020-01-02,5\n"
    )
    home = tmp_path / "home"
    env = {
        "ALPHAFORGE_HOME": str(home),
        "ALPHAFORGE_PRICES": str(watched / "*.csv"),
        "ALPHAFORGE_ALERT_WEBHOOK": url,
    }
    defs = definitions_from_env(env)
    prepare_home(load_settings(env))
    instance = DagsterInstance.local_temp(tempdir=str(home / "dagster"))
    sensor = defs.get_sensor_def("new_price_files_sensor")
    job = defs.resolve_job_def(JOB)
    ingest = [AssetKey(k) for k in ("price_history", "price_quarantine", "market_prices")]

    first = _evaluate(sensor, instance, None)
    assert isinstance(first, SensorResult) and len(first.run_requests) == 1
    assert "good.csv" in first.run_requests[0].run_key
    assert isinstance(_evaluate(sensor, instance, first.cursor), SkipReason)  # nothing new
    assert job.execute_in_process(instance=instance, asset_selection=ingest).success
    lake = home / "lake" / "market_prices.parquet"
    good = hashlib.sha256(lake.read_bytes()).hexdigest()

    (watched / "late.csv").write_text("symbol,date,close\nCCC,2020-01-02,7\nCCC,2020-01-03,oops\n")
    second = _evaluate(sensor, instance, first.cursor)
    assert isinstance(second, SensorResult) and isinstance(second.run_requests[0], RunRequest)
    assert (
        "late.csv" in second.run_requests[0].run_key
        and "good.csv" not in second.run_requests[0].run_key
    )
    failed = job.execute_in_process(instance=instance, asset_selection=ingest, raise_on_error=False)
    assert not failed.success
    assert hashlib.sha256(lake.read_bytes()).hexdigest() == good  # last good materialization stays

    failure = next(e for e in failed.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
    context = build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(failed.run_id),
        resources={"alerts": AlertResource(alert_dir=str(home / "alerts"), webhook_url=url)},
    ).for_run_failure()
    alert_on_run_failure(context)
    (alert_file,) = (home / "alerts").glob("*.json")
    alert = json.loads(alert_file.read_text())
    assert alert["run_id"] == failed.run_id
    assert alert["failed_steps"][0]["step"] == "price_history"
    assert (
        "late.csv" in alert["summary"]
        and "'close'" in alert["summary"]
        and "row 3" in alert["summary"]
    )
    assert received == [alert]  # the webhook got the same alert
    assert failed.run_id in (home / "alerts" / "alerts.log").read_text()


def test_nightly_schedule_ticks_on_weekdays_after_the_close(tmp_path):
    defs = definitions_from_env({"ALPHAFORGE_HOME": str(tmp_path)})
    schedule = defs.get_schedule_def("daily_job_schedule")
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from dagster._utils.schedules import cron_string_iterator

    start = datetime(2026, 11, 20, 12, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
    ticks = cron_string_iterator(start, schedule.cron_schedule, schedule.execution_timezone)
    friday, monday = next(ticks), next(ticks)
    assert (friday.weekday(), friday.hour, friday.minute) == (4, 18, 30)
    assert (monday.weekday(), monday.hour) == (0, 18)  # the weekend is skipped
    request = schedule.evaluate_tick(
        build_schedule_context(
            scheduled_execution_time=friday, repository_def=defs.get_repository_def()
        )
    ).run_requests[0]
    assert request.partition_key == "2026-11-20"
    config = defs.resolve_job_def("daily_job").partitioned_config
    ops = config.get_run_config_for_partition_key(request.partition_key)["ops"]
    assert ops["base_models"]["config"]["n_trials"] == 30  # the full profile


def test_alerts_mask_every_secret_the_deployment_holds(tmp_path, webhook, monkeypatch):
    """An error message that quotes a secret (a URL with its key, a password) is masked in
    the alert file, the log line and the webhook body."""
    url, received = webhook
    monkeypatch.setenv("VENDOR_KEY", "sk-live-9a8b7c6d")
    monkeypatch.setenv("ALPHAFORGE_OPTUNA_STORAGE", "postgresql://u:pg-S3cr3t%40x@db/o")
    alerts = AlertResource(
        alert_dir=str(tmp_path), webhook_url=url, redact=["VENDOR_KEY", "ALPHAFORGE_OPTUNA_STORAGE"]
    )
    alerts.send(
        {
            "time": "2026-12-02T03:00:00+00:00",
            "run_id": "0123456789abcdef",
            "failed_steps": [{"step": "price_history", "error": "GET /q?apikey=sk-live-9a8b7c6d"}],
            "summary": "could not connect with password pg-S3cr3t@x",
            "tags": {},
        }
    )
    written = [p.read_text() for p in tmp_path.iterdir()] + [json.dumps(received)]
    assert not [t for t in written if "sk-live-9a8b7c6d" in t or "pg-S3cr3t" in t]
    assert received[0]["failed_steps"][0]["error"] == "GET /q?apikey=***"
