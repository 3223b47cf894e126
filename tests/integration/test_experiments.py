"""Experiment files end to end: the examples run, results reproduce from what was logged."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from pipelines.resources import DAGSTER_RUN_TAG, PARENT_TAG

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, home: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``alphaforge`` in a subprocess; output goes to files, so a stray child holding the
    descriptors cannot make the test wait."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALPHAFORGE", "MLFLOW_", "DAGSTER_"))
    }
    env["ALPHAFORGE_HOME"] = str(home)
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


def parent_run(home: Path):
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("alphaforge")
    (run,) = client.search_runs(
        [experiment.experiment_id], f"tags.`{PARENT_TAG}` = 'true'", max_results=5
    )
    return client, run


def metrics(home: Path) -> dict[str, float]:
    client, parent = parent_run(home)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    return {f"{c.info.run_name}.{k}": v for c in children for k, v in c.data.metrics.items()}


@pytest.fixture(scope="module")
def from_example(tmp_path_factory):
    home = tmp_path_factory.mktemp("example_home")
    out = cli("run", "--config", "examples/fast.yaml", home=home)
    return home, out


def test_cli_run_from_example_reproduces_make_run(materialized, from_example):
    home, out = from_example
    assert "✓ 24 assets materialized" in out.stdout
    assert "lightgbm trial 10/10" in out.stdout  # progress shown
    for name in ("backtest", "oof_predictions", "signals"):
        assert_frame_equal(
            pl.read_parquet(home / "lake" / f"{name}.parquet"),
            pl.read_parquet(materialized.home / "lake" / f"{name}.parquet"),
        )
    assert metrics(home) == pytest.approx(metrics(materialized.home))


def test_resolved_experiment_is_logged_to_mlflow_and_dagster(from_example):
    home, _ = from_example
    client, parent = parent_run(home)
    logged = yaml.safe_load(
        Path(
            client.download_artifacts(parent.info.run_id, "experiment.yaml", str(home))
        ).read_text()
    )
    assert logged["profile"] == "fast" and logged["models"]["n_trials"] == 10
    assert (
        parent.data.params["models.n_trials"] == "10"
        and parent.data.params["data.start_date"] == "2007-01-01"
    )
    from dagster import DagsterInstance

    instance = DagsterInstance.from_ref(DagsterInstance.local_temp(str(home / "dagster")).get_ref())
    run = instance.get_run_by_id(parent.data.tags[DAGSTER_RUN_TAG])
    assert yaml.safe_load(run.tags["alphaforge/experiment"]) == logged


def test_rerun_from_the_logged_config_reproduces_the_metrics(from_example, tmp_path):
    home, _ = from_example
    client, parent = parent_run(home)
    config = Path(client.download_artifacts(parent.info.run_id, "experiment.yaml", str(tmp_path)))
    again = tmp_path / "again_home"
    cli("run", "--config", str(config), home=again)
    assert metrics(again) == pytest.approx(metrics(home))


def test_user_universe_example_on_per_ticker_alphavantage_files(tmp_path, materialized):
    """The AlphaVantage example on files the test writes from real (bundled) prices."""
    prices = pl.read_parquet(materialized.home / "lake" / "market_prices.parquet").filter(
        pl.col("date") >= pl.date(2011, 1, 1)
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
    assert "✓ 24 assets materialized" in out.stdout
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
