"""Shared fixtures: small seeded panels for unit tests, and one fast-profile materialization
of the whole graph on a real Dagster instance with real MLflow, shared by integration tests."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

# A runner that starts the suite with SIGTERM ignored passes that on to every child process,
# and Dagster's log-capture `tail` processes then cannot be stopped: restore the default.
signal.signal(signal.SIGTERM, signal.SIG_DFL)

SHARED_SP500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sp500-alphavantage"


def random_walk_panel(n_symbols: int = 6, n_days: int = 400, seed: int = 0) -> pl.DataFrame:
    """A seeded ``[symbol, date, close]`` panel of geometric random walks on business days."""
    rng = np.random.default_rng(seed)
    dates = pl.date_range(date(2015, 1, 1), date(2030, 1, 1), "1d", eager=True)
    dates = dates.filter(dates.dt.weekday() <= 5)[:n_days]
    rets = rng.normal(0.0003, 0.015, size=(n_days, n_symbols))
    closes = 100 * np.exp(np.cumsum(rets, axis=0))
    return pl.concat(
        pl.DataFrame({"symbol": f"S{i:02d}", "date": dates, "close": closes[:, i]})
        for i in range(n_symbols)
    )


@pytest.fixture(scope="session")
def index_ohlcv() -> pl.DataFrame:
    """Real daily OHLCV of the S&P 500 (SPX) and NASDAQ (NDX) indices, 1999-2018, as arch ships
    them: small real data for golden-value tests."""
    import arch.data.nasdaq
    import arch.data.sp500

    frames = []
    for name, module in (("SPX", arch.data.sp500), ("NDX", arch.data.nasdaq)):
        d = module.load().reset_index()
        frames.append(
            pl.DataFrame(
                {
                    "symbol": name,
                    "date": d["Date"].dt.date,
                    "open": d["Open"],
                    "high": d["High"],
                    "low": d["Low"],
                    "close": d["Close"],
                    "volume": d["Volume"].astype(float),
                }
            )
        )
    return pl.concat(frames)


@pytest.fixture
def panel() -> pl.DataFrame:
    return random_walk_panel()


@pytest.fixture
def alt(panel: pl.DataFrame) -> pl.DataFrame:
    """Market index (daily, same-day availability) and a monthly factor lagged one month."""
    dates = panel["date"].unique().sort()
    rng = np.random.default_rng(1)
    index = pl.DataFrame(
        {
            "series": "SP500",
            "kind": "price",
            "date": dates,
            "available_date": dates,
            "value": 1000 * np.exp(np.cumsum(rng.normal(0, 0.01, len(dates)))),
        }
    )
    months = dates.dt.month_end().unique().sort()
    monthly = pl.DataFrame(
        {
            "series": "FF_SMB",
            "kind": "monthly",
            "date": months,
            "available_date": months.dt.offset_by("1mo").dt.month_end(),
            "value": rng.normal(0, 2, len(months)),
        }
    )
    return pl.concat([index, monthly])


@dataclass
class Materialized:
    home: Path
    instance: object
    result: object
    defs: object
    env: dict[str, str]


@pytest.fixture(scope="session")
def materialized(tmp_path_factory) -> Materialized:
    """The whole graph, fast profile, in a temporary ALPHAFORGE_HOME (about a minute)."""
    from dagster import DagsterInstance

    from pipelines.definitions import (
        FULL_JOB,
        build_definitions,
        full_run_window,
        job_assets,
        partition_range_tags,
    )
    from pipelines.experiment import resolve
    from pipelines.settings import load_settings, prepare_home

    home = tmp_path_factory.mktemp("alphaforge_home")
    # the MLflow UI the links in metadata name: a free port, which the browser tests serve
    # MLflow on (as `alphaforge ui` would), so those links are checked as they were written
    env = {
        "ALPHAFORGE_HOME": str(home),
        "ALPHAFORGE_PROFILE": "fast",
        "ALPHAFORGE_MLFLOW_UI": f"http://127.0.0.1:{free_port()}",
    }
    settings = load_settings(env)
    prepare_home(settings)
    instance = DagsterInstance.local_temp(tempdir=str(settings.dagster_home))
    resolved = resolve(None, environ=env)
    defs = build_definitions(settings, resolved, env)
    # what `make run` runs: the history, December 2022 as daily partitions, everything after
    job = defs.resolve_job_def(FULL_JOB)
    result = job.execute_in_process(
        run_config=resolved.run_config(job_assets(job)),
        instance=instance,
        raise_on_error=False,
        tags=partition_range_tags(*full_run_window(resolved)),
    )
    return Materialized(home=home, instance=instance, result=result, defs=defs, env=env)


@pytest.fixture
def alphaforge_cli(capsys):
    """``alphaforge ARGS`` in this process, for the commands that return without running the
    graph (score, stream, validate, config, a refused run): ``main`` is what the console script
    calls, and a subprocess would add only its ~10 s of imports. The environment, with
    ``ALPHAFORGE_HOME=home``, the fast profile and ``extra`` (a None value unsets), and MLflow's
    tracking URI are put back afterwards."""
    import subprocess

    import mlflow

    from pipelines.cli import main

    def run(*args: str, home: Path, extra: dict[str, str] | None = None):
        saved, tracking = dict(os.environ), mlflow.get_tracking_uri()
        for key in [k for k in os.environ if k.startswith(("ALPHAFORGE", "MLFLOW_", "DAGSTER_"))]:
            del os.environ[key]
        env = {"ALPHAFORGE_HOME": str(home), "ALPHAFORGE_PROFILE": "fast"} | (extra or {})
        os.environ.update({k: v for k, v in env.items() if v is not None})  # None: unset
        capsys.readouterr()
        try:
            code = main(list(args))
        finally:
            os.environ.clear()
            os.environ.update(saved)
            mlflow.set_tracking_uri(tracking)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


@pytest.fixture
def clean_mlflow_env(monkeypatch):
    """Keep a developer's MLflow variables out of the tests."""
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)


ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "deploy" / "stack.sh"
HAVE_PG = bool(shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_stack(tmp_path_factory):
    """The prod topology from ``deploy/stack.sh``: PostgreSQL (Dagster, MLflow and Optuna
    databases) and an MLflow server on it, on free loopback ports. Yields ``folder`` and the
    client environment ``env`` (ALPHAFORGE_DEPLOYMENT=prod, ALPHAFORGE_PG_*, the MLflow URI)."""
    if not HAVE_PG:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    folder = tmp_path_factory.mktemp("stack")
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "MLFLOW": str(bin_dir / "mlflow"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    started = subprocess.run(
        [str(STACK), "start", str(folder), str(free_port()), str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    client_env = dict(
        line.split("=", 1) for line in (folder / "stack.env").read_text().splitlines() if line
    )
    try:
        yield {"folder": folder, "env": client_env}
    finally:
        subprocess.run([str(STACK), "stop", str(folder)], env=env, timeout=60)
