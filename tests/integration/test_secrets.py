"""Planted secrets reach where they are needed and nothing else.

Four secrets, each random per session: a vendor key (the HTTP price API on 127.0.0.1 demands
it), the PostgreSQL password (the Optuna studies live in PostgreSQL from ``deploy/stack.sh``,
where it is installed), the alert webhook's URL (its path is the secret, as Slack's are) and the
MLflow tracking URI (its path is the secret: a store no one else should find). One pipeline run
goes through ``alphaforge run`` (the whole fast graph), one run fails on the error path (a vendor
URL that ``http.client`` rejects, quoting the URL with the key), its failure alert goes to the
webhook, and a Dagster webserver is started on the home. Then every output is searched for every
secret (raw and URL-quoted): every file under the home (parquet pages decoded, zip and gzip
members inflated), the MLflow store and its params, tags and artifacts, the CLI's stdout and
stderr, the webhook's body, and the Dagster GraphQL API (resources, runs, their config, tags and
event logs)."""

import base64
import gzip
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pytest
from conftest import HAVE_PG, free_port
from fakes import vendor_stub, webhook_stub

from pipelines.sources import BundledPriceSource

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _optuna_database(stack: dict) -> str:
    """A database of its own in the session's PostgreSQL (other tests' studies live beside)."""
    import psycopg2

    env = stack["env"]
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=env["ALPHAFORGE_PG_PORT"],
        user=env["ALPHAFORGE_PG_USER"],
        password=env["ALPHAFORGE_PG_PASSWORD"],
        dbname="alphaforge_optuna",
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("drop database if exists secrets_optuna")
        cur.execute("create database secrets_optuna")
    conn.close()
    return (
        f"postgresql+psycopg2://{env['ALPHAFORGE_PG_USER']}:{env['ALPHAFORGE_PG_PASSWORD']}"
        f"@127.0.0.1:{env['ALPHAFORGE_PG_PORT']}/secrets_optuna"
    )


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "alphaforge"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _graphql(port: int, query: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


RESOURCES = """{ repositoriesOrError { ... on RepositoryConnection { nodes { name
  allTopLevelResourceDetails { name configuredValues { key value type } } } } } }"""
RUNS = """{ runsOrError { ... on Runs { results { runId status runConfigYaml
  tags { key value } } } } }"""
LOGS = """{ logsForRun(runId: "%s") { ... on EventConnection { events {
  ... on MessageEvent { message }
  ... on ExecutionStepFailureEvent { error { message stack cause { message stack } } }
  ... on RunFailureEvent { error { message stack } } } } } }"""


@pytest.fixture(scope="module")
def planted(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("secrets")
    home = root / "home"
    token = secrets.token_hex(8)
    planted = {
        "vendor key": f"sk-live-{token}a1",
        "webhook URL": f"hook-{token}b2",
        "tracking URI": f"tracking-{token}c3",
        "PostgreSQL password": f"pg-{token}d4",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAFORGE", "MLFLOW_"))}
    tracking = root / planted["tracking URI"]
    tracking.mkdir()
    if HAVE_PG:  # the studies on PostgreSQL, with the stack's generated password
        stack = request.getfixturevalue("pg_stack")
        planted["PostgreSQL password"] = stack["env"]["ALPHAFORGE_PG_PASSWORD"]
        env["OPTUNA_URL"] = _optuna_database(stack)
    env |= {
        "ALPHAFORGE_HOME": str(home),
        "ALPHAFORGE_MLFLOW_URI": f"sqlite:///{tracking / 'mlflow.db'}",
        "ALPHAFORGE_PG_PASSWORD": planted["PostgreSQL password"],  # present, as in prod
        "VENDOR_KEY": planted["vendor key"],
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    prices = BundledPriceSource().load_prices().frame
    bodies = {
        symbol: part.select(timestamp="date", close="close").write_csv().encode()
        for (symbol,), part in prices.group_by("symbol")
    }
    services = ExitStack()
    request.addfinalizer(services.close)
    vendor, queries = services.enter_context(vendor_stub(bodies, planted["vendor key"]))
    hook, received = services.enter_context(webhook_stub())
    env["ALPHAFORGE_ALERT_WEBHOOK"] = f"{hook}/services/T0/{planted['webhook URL']}"
    url = f"{vendor}/q?symbol={{symbol}}&apikey={{api_key}}"
    config = root / "experiment.yaml"
    config.write_text(
        "profile: fast\n"
        "data:\n  source: http\n"
        f"  url: '{url}'\n"
        "  api_key: ${env:VENDOR_KEY}\n"
        f"  universe: {sorted(bodies)}\n"
        "  columns: {date: timestamp}\n  end_date: 2022-12-28\n"
        "models: {n_trials: 2}\n"
        + ("tracking: {optuna_storage: '${env:OPTUNA_URL}'}\n" if HAVE_PG else "")
    )
    env["ALPHAFORGE_CONFIG"] = str(config)
    # the webserver first: it starts while the pipeline runs (its own process group: `dagster`
    # processes outlive SIGTERM)
    (home / "dagster").mkdir(parents=True)
    from pipelines.settings import load_settings, prepare_home

    prepare_home(load_settings(env))
    port = free_port()
    web_log = root / "webserver.log"
    webserver = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
        + ["-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=env | {"DAGSTER_HOME": str(home / "dagster")},
        stdout=web_log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        good = _cli("run", "--config", str(config), env=env)
        # the error path: http.client rejects the URL (a space), quoting it with the key
        bad = _cli(
            "run", "--config", str(config), "--select", "price_history",
            "--set", f"data.url={url}&x= y", env=env,
        )  # fmt: skip
        alert = _send_failure_alert(home, env, received)
        graphql = _query_webserver(port, webserver)
    finally:
        os.killpg(webserver.pid, signal.SIGKILL)
        webserver.wait()
        services.close()
    yield {
        "planted": planted,
        "home": home,
        "tracking": tracking,
        "env": env,
        "good": good,
        "bad": bad,
        "alert": alert,
        "graphql": graphql,
        "webserver_log": web_log.read_text(),
        # the key reached the vendor on the good run's requests
        "vendor_keys_ok": [q.get("apikey") == [planted["vendor key"]] for q in queries],
        "n_symbols": len(bodies),
    }
    shutil.rmtree(root, ignore_errors=True)


def _send_failure_alert(home: Path, env: dict, received: list) -> dict:
    """What the daemon's run-failure sensor does for the failed run, with the code location's
    own alert resource (its webhook resolved from the environment, as in the daemon)."""
    from dagster import DagsterEventType, DagsterInstance, build_run_status_sensor_context
    from dagster._core.instance.ref import InstanceRef

    from pipelines.definitions import definitions_from_env
    from pipelines.sensors import alert_on_run_failure

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        defs = definitions_from_env(env)
        with DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster"))) as instance:
            (record,) = instance.get_records_for_run(
                of_type=DagsterEventType.RUN_FAILURE, run_id=_failed_run(instance)
            ).records
            context = build_run_status_sensor_context(
                sensor_name="alert_on_run_failure",
                dagster_event=record.event_log_entry.dagster_event,
                dagster_instance=instance,
                dagster_run=instance.get_run_by_id(record.run_id),
                resources={"alerts": defs.resources["alerts"]},
            ).for_run_failure()
            alert_on_run_failure(context)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"received": list(received)}


def _failed_run(instance) -> str:
    from dagster import DagsterRunStatus, RunsFilter

    (run,) = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
    return run.run_id


def _query_webserver(port: int, webserver: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 180
    while True:
        try:
            resources = _graphql(port, RESOURCES)
            if "allTopLevelResourceDetails" in resources:
                break
        except OSError:
            pass
        assert webserver.poll() is None and time.monotonic() < deadline, "webserver did not start"
        time.sleep(1)
    runs = _graphql(port, RUNS)
    ids = [r["runId"] for r in json.loads(runs)["data"]["runsOrError"]["results"]]
    logs = {run_id: _graphql(port, LOGS % run_id) for run_id in ids}
    return {"resources": resources, "runs": runs, "logs": logs, "run_ids": ids}


def _forms(value: str) -> list[bytes]:
    """A secret as it could be written: raw, URL-quoted, base64."""
    return [value.encode(), quote(value, safe="").encode(), base64.b64encode(value.encode())]


def _leaks(text: bytes | str, planted: dict) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [name for name, value in planted.items() if any(f in data for f in _forms(value))]


def _decoded(path: Path) -> bytes:
    """A file's bytes plus what they hold once decoded: parquet pages (compressed) as CSV,
    zip members (skops models) and gzip streams inflated."""
    data = path.read_bytes()
    parts = [data]
    if path.suffix == ".parquet":
        parts.append(pl.read_parquet(path).write_csv().encode())
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            parts += [archive.read(name) for name in archive.namelist()]
    if data[:2] == b"\x1f\x8b":
        parts.append(gzip.decompress(data))
    return b"\n".join(parts)


def test_the_secrets_did_their_work(planted):
    """The control: the run used every secret where it belongs."""
    good, home = planted["good"], planted["home"]
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    keys_ok = planted["vendor_keys_ok"]
    assert keys_ok and all(keys_ok[: planted["n_symbols"]])  # the key reached the vendor
    assert pl.read_parquet(home / "lake" / "market_prices.parquet")["symbol"].n_unique() == 20
    assert (planted["tracking"] / "mlflow.db").stat().st_size > 100_000  # tracked there
    assert planted["alert"]["received"], "the webhook got no alert"
    path, _ = planted["alert"]["received"][0]
    assert planted["planted"]["webhook URL"] in path  # posted to the secret URL itself
    if HAVE_PG:
        import optuna

        summaries = optuna.get_all_study_summaries(planted["env"]["OPTUNA_URL"])
        assert sum(s.n_trials for s in summaries) >= 4  # 2 trials x 2 models, on PostgreSQL


def test_no_secret_in_any_file_under_the_home_or_in_the_tracking_store(planted):
    searched, leaks = 0, {}
    roots = [planted["home"], planted["tracking"]]
    for path in (p for root in roots for p in root.rglob("*") if p.is_file()):
        searched += 1
        if found := _leaks(_decoded(path), planted["planted"]):
            leaks[str(path)] = found
    assert searched > 100 and leaks == {}


def test_no_secret_on_stdout_or_stderr(planted):
    for done in (planted["good"], planted["bad"]):
        assert _leaks(done.stdout + done.stderr, planted["planted"]) == []
    assert _leaks(planted["webserver_log"], planted["planted"]) == []


def test_no_secret_in_mlflow_params_tags_or_artifacts(planted):
    import mlflow

    client = mlflow.MlflowClient(planted["env"]["ALPHAFORGE_MLFLOW_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) > 10
    shown = json.dumps([{"params": r.data.params, "tags": r.data.tags} for r in runs])
    models = client.search_model_versions("name='alphaforge-ensemble'")
    shown += json.dumps([dict(m.tags) for m in models] + [m.source for m in models])
    assert _leaks(shown, planted["planted"]) == []
    # the experiment logged is the reference, never its value
    parent = next(r for r in runs if r.data.tags.get("alphaforge.parent") == "true")
    logged = client.download_artifacts(parent.info.run_id, "experiment.yaml")
    text = Path(logged).read_text()
    assert "${env:VENDOR_KEY}" in text and "${env:ALPHAFORGE_MLFLOW_URI}" in text
    assert _leaks(text, planted["planted"]) == []


def test_the_error_path_names_the_symbol_and_masks_the_key_everywhere(planted):
    bad, alert = planted["bad"], planted["alert"]
    assert bad.returncode == 1
    assert "no readable price rows" in bad.stderr, bad.stderr[-2000:]
    (_, body), *_ = alert["received"]
    message = json.loads(body)
    assert message["failed_steps"][0]["step"] == "price_history"
    assert "apikey=***" in message["summary"] or "apikey=***" in json.dumps(message)
    assert _leaks(body, planted["planted"]) == []
    alerts = planted["home"] / "alerts"
    assert _leaks(b"".join(p.read_bytes() for p in alerts.iterdir()), planted["planted"]) == []


def test_no_secret_in_the_dagster_graphql_api_of_a_running_webserver(planted):
    graphql = planted["graphql"]
    resources = json.loads(graphql["resources"])["data"]["repositoriesOrError"]["nodes"][0]
    shown = {
        (r["name"], v["key"]): (v["type"], v["value"])
        for r in resources["allTopLevelResourceDetails"]
        for v in r["configuredValues"]
    }
    # the resources are there, the secrets by name only (dagster.EnvVar)
    assert shown[("price_source", "api_key")] == ("ENV_VAR", "VENDOR_KEY")
    assert shown[("alerts", "webhook_url")] == ("ENV_VAR", "ALPHAFORGE_ALERT_WEBHOOK")
    assert shown[("tracker", "tracking_uri")] == ("ENV_VAR", "ALPHAFORGE_MLFLOW_URI")
    if HAVE_PG:
        assert shown[("tuning", "storage")] == ("ENV_VAR", "OPTUNA_URL")
    assert len(graphql["run_ids"]) == 2 and all(graphql["logs"].values())
    everything = graphql["resources"] + graphql["runs"] + "".join(graphql["logs"].values())
    assert "price_history" in everything and "apikey=***" in everything
    assert _leaks(everything, planted["planted"]) == []
