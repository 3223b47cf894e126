"""Experiment files end to end: the examples run, results reproduce from what was logged."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import polars as pl
import pytest
import yaml
from conftest import HAVE_PG
from polars.testing import assert_frame_equal

from pipelines.definitions import experiment_digest
from pipelines.experiment import PROFILES, resolve
from pipelines.resources import DAGSTER_RUN_TAG, PARENT_TAG
from pipelines.settings import PG_DATABASES, postgres_url
from pipelines.sources import BundledPriceSource

FAST_TRIALS = PROFILES["fast"]["models"]["n_trials"]


def _daily_assets() -> int:
    """What a daily run materializes: every asset but the order books' (their own job)."""
    from pipelines.definitions import definitions_from_env

    graph = definitions_from_env(
        {"ALPHAFORGE_HOME": "/nonexistent/alphaforge"}
    ).resolve_asset_graph()
    return sum(graph.get(k).group_name != "microstructure" for k in graph.get_all_asset_keys())


N_DAILY_ASSETS = _daily_assets()

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def cli(
    *args: str, home: Path, timeout: int = 600, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``alphaforge`` in a subprocess; output goes to files, so a stray child holding the
    descriptors cannot make the test wait."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALPHAFORGE", "MLFLOW_", "DAGSTER_"))
    }
    env["ALPHAFORGE_HOME"] = str(home)
    env |= extra or {}
    log = home.parent / f"{home.name}.log"
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    text = log.read_text()
    assert proc.returncode == 0, text[-5000:]
    assert not _orphans_tailing(home), "alphaforge run left log-capture processes behind"
    return subprocess.CompletedProcess(proc.args, proc.returncode, text, "")


def _orphans_tailing(home: Path) -> list[str]:
    """``tail`` processes still reading a file under ``home`` (Dagster's compute-log capture)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0] == b"tail" and any(str(home).encode() in a for a in args):
            found.append(cmdline.parent.name)
    return found


def parent_run(home: Path, tracking_uri: str | None = None):
    client = mlflow.MlflowClient(tracking_uri or f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("alphaforge")
    # the first run's parent (a later test adds runs to the materialized home)
    run = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{PARENT_TAG}` = 'true'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )[0]
    return client, run


def metrics(home: Path, tracking_uri: str | None = None) -> dict[str, float]:
    client, parent = parent_run(home, tracking_uri)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    return {f"{c.info.run_name}.{k}": v for c in children for k, v in c.data.metrics.items()}


def test_the_fast_example_is_the_experiment_make_run_runs(materialized):
    """``examples/fast.yaml`` resolves to exactly the experiment of the materialized home (what
    ``make run`` runs), which the tests below rerun from its log."""
    assert (
        resolve("examples/fast.yaml", environ={}).experiment
        == resolve(None, environ=materialized.env).experiment
    )


def test_resolved_experiment_is_logged_to_mlflow_and_dagster(materialized, tmp_path):
    client, parent = parent_run(materialized.home)
    logged = yaml.safe_load(
        Path(
            client.download_artifacts(parent.info.run_id, "experiment.yaml", str(tmp_path))
        ).read_text()
    )
    assert logged["profile"] == "fast" and logged["models"]["n_trials"] == FAST_TRIALS
    assert (
        parent.data.params["models.n_trials"] == str(FAST_TRIALS)
        and parent.data.params["data.start_date"] == "2007-01-01"
    )
    # the Dagster run names the experiment by profile and digest (the YAML lives in MLflow)
    run = materialized.instance.get_run_by_id(parent.data.tags[DAGSTER_RUN_TAG])
    text = Path(tmp_path / "experiment.yaml").read_text()
    assert run.tags["alphaforge/experiment_sha256"] == experiment_digest(text)
    assert run.tags["alphaforge/profile"] == "fast" and "alphaforge/experiment" not in run.tags


@pytest.fixture(scope="module")
def rerun(materialized, tmp_path_factory, request):
    """``alphaforge run --config`` on the experiment the materialized home logged to MLflow.
    Where PostgreSQL is installed (CI) it runs on the prod deployment: the Dagster instance in
    PostgreSQL, steps in processes of their own, MLflow through its server on PostgreSQL,
    Optuna on PostgreSQL; elsewhere on a local home."""
    folder = tmp_path_factory.mktemp("rerun")
    client, parent = parent_run(materialized.home)
    config = Path(client.download_artifacts(parent.info.run_id, "experiment.yaml", str(folder)))
    prod = request.getfixturevalue("pg_stack")["env"] if HAVE_PG else {}
    home = folder / "home"
    out = cli("run", "--config", str(config), home=home, extra=prod)
    return home, out, prod


def test_rerun_from_the_logged_config_reproduces_the_results(materialized, rerun):
    home, out, prod = rerun
    assert f"✓ {N_DAILY_ASSETS} assets materialized" in out.stdout
    assert f"lightgbm trial {FAST_TRIALS}/{FAST_TRIALS}" in out.stdout  # progress shown
    for name in ("backtest", "oof_predictions", "signals"):
        assert_frame_equal(
            pl.read_parquet(home / "lake" / f"{name}.parquet"),
            pl.read_parquet(materialized.home / "lake" / f"{name}.parquet"),
        )
    uri = prod.get("ALPHAFORGE_MLFLOW_URI")
    rerun, first = metrics(home, uri), metrics(materialized.home)
    # Known gap: the LSTM correlation forecast, trained on GARCH-standardised returns, lands
    # about 1e-3 apart between a step process of its own (prod) and the in-process run: the
    # GARCH fits agree to the last bits only, and the net amplifies it (every other figure,
    # its EWMA and DCC neighbours included, agrees to 1e-6)
    lstm = "correlation_forecasts.corr_mse_lstm"
    assert rerun.pop(lstm) == pytest.approx(first.pop(lstm), rel=1e-2)
    assert rerun == pytest.approx(first)


@pytest.mark.skipif(not HAVE_PG, reason="PostgreSQL is not installed (apt-get install postgresql)")
def test_the_whole_fast_graph_ran_on_the_postgres_backed_deployment(rerun):
    """The rerun above, on the prod deployment: every store in PostgreSQL, a process per step,
    and each Optuna study holding exactly its budget."""
    home, out, prod = rerun
    assert "PostgreSQL-backed instance" in out.stdout and not (home / "mlflow.db").exists()
    facts = subprocess.run(
        [sys.executable, "-c", INSPECT_INSTANCE],
        env=os.environ | prod | {"DAGSTER_HOME": str(home / "dagster")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert facts.returncode == 0, facts.stderr
    found = dict(line.split("=", 1) for line in facts.stdout.splitlines() if "=" in line)
    assert found["storage"] == "PostgresRunStorage" and found["status"] == "SUCCESS"
    assert int(found["step_pids"]) > 1  # the multiprocess executor: a process per step
    import optuna

    optuna_url = postgres_url(prod, PG_DATABASES["optuna"])
    studies = optuna.get_all_study_names(optuna_url)
    assert {n.split("-")[0] for n in studies} >= {"lightgbm", "xgboost"}
    for name in studies:
        study = optuna.load_study(study_name=name, storage=optuna_url)
        assert len(study.trials) == FAST_TRIALS  # the budget exactly: none lost or added


INSPECT_INSTANCE = """
from dagster import DagsterEventType, DagsterInstance
instance = DagsterInstance.get()
run = instance.get_run_records(limit=1)[0].dagster_run
print("storage=" + type(instance.run_storage).__name__)
print("status=" + run.status.value)
starts = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_START).records
print("step_pids=" + str(len({r.event_log_entry.dagster_event.pid for r in starts})))
"""


def test_user_universe_example_on_per_ticker_alphavantage_files(tmp_path):
    """The AlphaVantage example on files the test writes from real (bundled) prices."""
    prices = (
        BundledPriceSource()
        .load_prices()
        .frame.select("symbol", "date", "close")
        .filter(pl.col("date") >= pl.date(2011, 1, 1))
    )
    folder = tmp_path / "prices"
    folder.mkdir()
    tickers = sorted(prices["symbol"].unique())[:12]
    split_day = pl.date(2015, 6, 1)
    for ticker in tickers:
        part = prices.filter(pl.col("symbol") == ticker)
        # the first ticker had a 2-for-1 split: the vendor's raw prices before it are doubled
        before = (pl.col("date") < split_day) & pl.lit(ticker == tickers[0])
        raw = pl.when(before).then(pl.col("close") * 2).otherwise(pl.col("close"))
        first_after = (pl.col("date") >= split_day) & (pl.col("date").shift(1) < split_day)
        part.sort("date").select(
            pl.col("date").cast(pl.String).alias("timestamp"),
            (raw * 1.0).alias("open"),
            (raw * 1.02).alias("high"),
            (raw * 0.98).alias("low"),
            raw.alias("close"),
            pl.col("close").alias("adjusted_close"),
            pl.when(before).then(5e5).otherwise(1e6).alias("volume"),
            pl.lit(0.0).alias("dividend_amount"),
            pl.when(first_after & pl.lit(ticker == tickers[0]))
            .then(2.0)
            .otherwise(1.0)
            .alias("split_coefficient"),
        ).sort("timestamp", descending=True).write_csv(  # vendor order: newest first
            folder / f"{ticker}.csv"
        )
        (folder / f"{ticker}.csv").write_bytes(
            __import__("gzip").compress((folder / f"{ticker}.csv").read_bytes())
        )
        (folder / f"{ticker}.csv").rename(folder / f"{ticker}.csv.gz")
    home = tmp_path / "home"
    out = cli(
        "run",
        "--config",
        "examples/alphavantage_csvs.yaml",
        "--set",
        f"data.path={folder}/*.csv.gz",
        "--set",
        f"data.root={folder}",
        "--set",
        "data.daily_from=2022-12-01",
        "--set",
        "data.end_date=2022-12-28",
        "--set",
        "models.n_trials=3",
        home=home,
    )
    assert f"✓ {N_DAILY_ASSETS} assets materialized" in out.stdout
    ingested = pl.read_parquet(home / "lake" / "market_prices.parquet")
    assert sorted(ingested["symbol"].unique()) == tickers
    # our split adjustment of the raw prices gives back the adjusted closes exactly
    original = prices.filter(pl.col("symbol").is_in(tickers)).sort("symbol", "date")
    assert_frame_equal(
        ingested.select("symbol", "date", "close").sort("symbol", "date"),
        original.select("symbol", "date", "close"),
    )
    assert {"open", "high", "low", "volume"} <= set(ingested.columns)
    # with OHLCV the backtest charges the forecast spread and square-root impact
    daily = pl.read_parquet(home / "lake" / "backtest.parquet")
    assert daily["spread"].sum() > 0 and daily["impact"].sum() > 0
