"""A vendor key planted in the environment reaches the vendor and nothing else: the whole fast
pipeline runs from an HTTP price API on 127.0.0.1 that demands the key, then every byte under
the AlphaForge home (lake parquet, reports, MLflow's database and artifacts, Dagster's event
log and compute logs) is searched for it."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import polars as pl
import pytest
from dagster import DagsterInstance

from pipelines.definitions import (
    FULL_JOB,
    build_definitions,
    experiment_digest,
    full_run_window,
    job_assets,
    partition_range_tags,
)
from pipelines.experiment import resolve
from pipelines.settings import load_settings, prepare_home
from pipelines.sources import BundledPriceSource

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SECRET = "sk-live-7f3a9c1e5b2d4f60a8e1"


@pytest.fixture(scope="module")
def vendor():
    prices = BundledPriceSource().load_prices().frame
    bodies = {
        symbol: part.select(timestamp="date", close="close").write_csv().encode()
        for (symbol,), part in prices.group_by("symbol")
    }
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            query = parse_qs(urlparse(self.path).query)
            calls.append(query["apikey"] == [SECRET])
            body = bodies.get(query["symbol"][0]) if query["apikey"] == [SECRET] else None
            self.send_response(200 if body else 401)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield (
        f"http://127.0.0.1:{server.server_port}/q?symbol={{symbol}}&apikey={{api_key}}",
        sorted(bodies),
        calls,
    )
    server.shutdown()


def test_a_planted_vendor_key_leaks_nowhere(tmp_path, vendor):
    url, symbols, calls = vendor
    home = tmp_path / "home"
    env = {"ALPHAFORGE_HOME": str(home), "ALPHAFORGE_PROFILE": "fast", "VENDOR_KEY": SECRET}
    overrides = {
        "data.source": "http",
        "data.url": url,
        "data.api_key": "${env:VENDOR_KEY}",
        "data.universe": str(symbols),
        "data.columns": "{date: timestamp}",
        "data.end_date": "2022-12-28",
        "models.n_trials": "2",
    }
    resolved = resolve(None, environ=env, overrides=overrides)
    settings = load_settings(env)
    prepare_home(settings)
    defs = build_definitions(settings, resolved, env)
    instance = DagsterInstance.local_temp(tempdir=str(settings.dagster_home))
    job = defs.resolve_job_def(FULL_JOB)
    result = job.execute_in_process(
        run_config=resolved.run_config(job_assets(job)),
        instance=instance,
        tags=partition_range_tags(*full_run_window(resolved)),
        raise_on_error=False,
    )
    assert result.success
    assert calls and all(calls)  # the vendor got the key on every request
    panel = pl.read_parquet(home / "lake" / "market_prices.parquet")
    assert panel["symbol"].n_unique() == 20
    searched, leaks = 0, []
    for path in home.rglob("*"):
        if path.is_file():
            searched += 1
            if SECRET.encode() in path.read_bytes():
                leaks.append(str(path.relative_to(home)))
    assert searched > 50 and leaks == []
    # the reference, not the value, is what the run records (the parent MLflow run's
    # experiment.yaml, the experiment the Dagster run's digest tag names)
    logged = [p.read_text() for p in (home / "mlartifacts").rglob("experiment.yaml")]
    assert len(logged) == 1 and "${env:VENDOR_KEY}" in logged[0]
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["alphaforge/experiment_sha256"] == experiment_digest(logged[0])
