"""Shared fixtures: small seeded panels for unit tests, and one fast-profile materialization
of the whole graph on a real Dagster instance with real MLflow, shared by integration tests."""

import glob
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

# A runner that starts the suite with SIGTERM ignored passes that on to every child process,
# and Dagster's log-capture `tail` processes then cannot be stopped: restore the default.
signal.signal(signal.SIGTERM, signal.SIG_DFL)

# `make test` runs the suite on two pytest-xdist workers: OpenMP's threads (LightGBM, XGBoost,
# torch) then sleep instead of spinning while they wait for a core the other worker holds;
# results do not depend on it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHARED_SP500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sp500-alphavantage"

# The tests that use the fixtures one worker builds once (a whole fast run each) go to that one
# worker; every other module goes whole to whichever worker is free. xdist's own `loadgroup`
# cannot say this under pytest 9 (it renames node ids through an attribute pytest 9 no longer
# reads), so each worker writes the groups it collected and the controller's scheduler reads them.
SHARED_HOMES = {"materialized", "lob_materialized"}
GROUPS = "ALPHAFORGE_TEST_GROUPS"


def pytest_configure(config):
    if not hasattr(config, "workerinput") and config.getoption("dist", "no") != "no":
        os.environ[GROUPS] = str(Path(tempfile.mkdtemp(prefix="xdist-groups-")) / "groups.json")


def pytest_collection_modifyitems(config, items):
    path = os.environ.get(GROUPS)
    if not (path and hasattr(config, "workerinput")):
        return
    groups = {
        item.nodeid: "shared-home"
        if SHARED_HOMES & set(item.fixturenames)
        else item.nodeid.split("::")[0]
        for item in items
    }
    part = Path(f"{path}.{config.workerinput['workerid']}")
    part.write_text(json.dumps(groups))
    part.replace(path)  # both workers write the same collection


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedHomeScheduling(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # read once the workers have collected
                self.groups = json.loads(Path(os.environ[GROUPS]).read_text())
            return self.groups.get(nodeid, nodeid.split("::")[0])

    return SharedHomeScheduling(config, log) if os.environ.get(GROUPS) else None


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


@dataclass
class TempPipeline:
    """The pipeline's Definitions on a temporary home: what a test runs jobs of."""

    settings: object
    resolved: object
    defs: object
    instance: object

    def job(self, name: str):
        return self.defs.resolve_job_def(name)


def temp_pipeline(
    env: dict[str, str],
    config: Path | None = None,
    overrides: dict[str, str] | None = None,
    *,
    check_files: bool = True,
    instance=None,
    prepare: bool = True,
) -> TempPipeline:
    """Settings from ``env``, the experiment (``config`` and ``overrides`` over the profile)
    resolved, the home prepared (unless ``prepare=False``), Definitions built, and a Dagster
    instance in the home's dagster folder unless ``instance`` is given: the one copy of what
    a test does before it runs a job on a home of its own."""
    from dagster import DagsterInstance

    from pipelines.definitions import build_definitions
    from pipelines.experiment import resolve
    from pipelines.settings import load_settings, prepare_home

    settings = load_settings(env)
    if prepare:
        prepare_home(settings)
    resolved = resolve(config, environ=env, overrides=overrides or {}, check_files=check_files)
    defs = build_definitions(settings, resolved, env)
    if instance is None:
        instance = DagsterInstance.local_temp(tempdir=str(settings.dagster_home))
    return TempPipeline(settings, resolved, defs, instance)


@pytest.fixture(scope="session")
def materialized(tmp_path_factory) -> Materialized:
    """The whole graph, fast profile, in a temporary ALPHAFORGE_HOME (about a minute)."""
    from pipelines.definitions import FULL_JOB, full_run_window, job_assets, partition_range_tags

    home = tmp_path_factory.mktemp("alphaforge_home")
    # the MLflow UI the links in metadata name: a free port, which the browser tests serve
    # MLflow on (as `alphaforge ui` would), so those links are checked as they were written
    env = {
        "ALPHAFORGE_HOME": str(home),
        "ALPHAFORGE_PROFILE": "fast",
        "ALPHAFORGE_MLFLOW_UI": f"http://127.0.0.1:{free_port()}",
    }
    pipeline = temp_pipeline(env)
    resolved, defs, instance = pipeline.resolved, pipeline.defs, pipeline.instance
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


# --- order books ---------------------------------------------------------------------------

SHARED_LOBSTER = Path(__file__).resolve().parents[2] / "shared" / "data" / "lobster-2012-06-21"
LOB_DUMMY = 9_999_999_999


def synthetic_lob(
    n: int = 3000,
    levels: int = 5,
    seed: int = 0,
    halt_at: int | None = None,
    empty_at: int | None = None,
    quantum: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded LOBSTER-format day (``(messages, book)`` integer/float arrays, the book after
    each message): limit orders, partial cancels, deletes, visible executions at the best,
    hidden executions inside the spread (on the half tick), ties in time, thin sides that
    empty now and then (dummy levels), and optionally a halt / quoting / resume sequence
    starting at ``halt_at``, and every bid deleted level by level from ``empty_at`` (an empty
    side: dummies at every level). With ``quantum`` every time is a multiple of it (events
    exactly a window apart). A plain event loop: test data, not product code."""
    rng = np.random.default_rng(seed)
    tick = 100
    bids = {1_000_000 - tick * (k + 1): int(rng.integers(1, 300)) for k in range(3)}
    asks = {1_000_000 + tick * (k + 1): int(rng.integers(1, 300)) for k in range(2)}
    t, oid = 34_200.0 + 0.001, 10
    messages, books = [], []

    def snapshot():
        a = sorted(asks)[:levels]
        b = sorted(bids, reverse=True)[:levels]
        row = []
        for k in range(levels):
            row += [a[k], asks[a[k]]] if k < len(a) else [LOB_DUMMY, 0]
            row += [b[k], bids[b[k]]] if k < len(b) else [-LOB_DUMMY, 0]
        return row

    halts = {halt_at: -1, halt_at + 5: 0, halt_at + 10: 1} if halt_at is not None else {}
    for i in range(n):
        t += 0.0 if rng.random() < 0.1 else float(rng.exponential(0.08))
        t = round(t, 9) if quantum is None else 34_200 + quantum * round((t - 34_200) / quantum)
        if i in halts:
            messages.append((t, 7, 0, 0, halts[i], -1))
            books.append(snapshot())
            continue
        best_bid = max(bids) if bids else None
        best_ask = min(asks) if asks else None
        if empty_at is not None and empty_at <= i and bids and not messages[-1][1:2] == (1,):
            if i < empty_at + 50:  # delete the bids, best first, until none is left
                price = max(bids)
                messages.append((t, 3, int(rng.integers(1, oid + 1)), bids.pop(price), price, 1))
                books.append(snapshot())
                continue
        r = rng.random()
        side = 1 if rng.random() < 0.5 else -1
        book = bids if side == 1 else asks
        if r < 0.45 or not book:  # new limit order
            if side == 1:
                top = best_bid if best_bid is not None else (best_ask or 1_000_100) - 2 * tick
                price = top + tick * int(rng.integers(-3, 2))
                if best_ask is not None:
                    price = min(price, best_ask - tick)
            else:
                top = best_ask if best_ask is not None else (best_bid or 999_900) + 2 * tick
                price = top + tick * int(rng.integers(-1, 4))
                if best_bid is not None:
                    price = max(price, best_bid + tick)
            size = int(rng.integers(1, 400))
            book[price] = book.get(price, 0) + size
            oid += 1
            messages.append((t, 1, oid, size, price, side))
        elif r < 0.85:  # cancel, delete or visible execution
            kind = 2 if r < 0.55 else 3 if r < 0.72 else 4
            price = (
                (max if side == 1 else min)(book)
                if kind == 4
                else list(book)[int(rng.integers(len(book)))]
            )
            have = book[price]
            size = int(rng.integers(1, have + 1)) if kind != 2 or have > 1 else 1
            if kind == 2 and size == have:
                kind = 3
            book[price] = have - size
            if book[price] == 0:
                del book[price]
            messages.append((t, kind, int(rng.integers(1, oid + 1)), size, price, side))
        else:  # hidden execution inside the spread, on the half tick
            if best_bid is None or best_ask is None:
                messages.append((t, 1, oid, 1, (best_bid or best_ask), 1 if best_bid else -1))
                (bids if best_bid else asks)[best_bid or best_ask] += 1
            else:
                halves = (best_ask - best_bid) // (tick // 2)
                price = best_bid + (tick // 2) * int(rng.integers(0, halves + 1))
                messages.append((t, 5, 0, int(rng.integers(1, 200)), price, side))
        books.append(snapshot())
    return np.array(messages, dtype=object), np.array(books, dtype=np.int64)


def write_lobster(
    folder: Path, ticker: str, messages, book, levels: int, gz: bool = False, day="2012-06-21"
) -> tuple[Path, Path]:
    """Write a pair under LOBSTER's file names (``.csv`` or ``.csv.gz``, no header)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{ticker}_{day}_34200000_57600000"
    suffix = ".csv.gz" if gz else ".csv"
    paths = (
        folder / f"{stem}_message_{levels}{suffix}",
        folder / f"{stem}_orderbook_{levels}{suffix}",
    )
    msg = "\n".join(
        f"{m[0]:.9f},{m[1]},{m[2]},{m[3]},{m[4]},{m[5]}" if not isinstance(m, str) else m
        for m in messages
    )
    bk = "\n".join(
        ",".join(str(v) for v in row) if not isinstance(row, str) else row for row in book
    )
    for path, text in zip(paths, (msg, bk), strict=True):
        data = (text + "\n").encode()
        path.write_bytes(gzip.compress(data) if gz else data)
    return paths


def shared_slice(kind: str, levels: int, ticker: str = "GOOG", lines: int = 4000) -> list[str]:
    """The first ``lines`` lines of a shared LOBSTER file (skip when ../shared is absent)."""
    path = SHARED_LOBSTER / f"{ticker}_2012-06-21_34200000_57600000_{kind}_{levels}.csv.gz"
    if not path.is_file():
        pytest.skip(f"the shared LOBSTER files are absent ({SHARED_LOBSTER})")
    with gzip.open(path, "rt") as handle:
        return [next(handle).rstrip("\n") for _ in range(lines)]


@dataclass
class LobMaterialized:
    folder: Path
    result: object
    keys: list[str]
    defs: object
    resolved: object
    env: dict[str, str]


LOB_TEST_EXPERIMENT = """
profile: fast
data:
  lob: {folder}
microstructure:
  clocks_s: [1, 10]
  impact_interval_s: 1
  ticker: GOOG
  deeplob_epochs: 1
  deeplob_windows: 400
"""


@pytest.fixture(scope="session")
def lob_materialized(materialized, tmp_path_factory) -> LobMaterialized:
    """The microstructure job, as ``alphaforge run`` runs it, on small LOBSTER pairs in the
    materialized home (its Dagster instance and MLflow store): the shared files' first lines
    (GOOG 10 levels, AAPL 1 level) when ../shared is there, else synthetic days."""
    from pipelines.definitions import (
        LOB_JOB,
        job_assets,
        lob_source,
        partition_range_tags,
    )
    from pipelines.lob import LOB_PARTITIONS, register_partitions

    folder = tmp_path_factory.mktemp("lobster")
    for ticker, levels, lines, seed in (("GOOG", 10, 6000, 1), ("AAPL", 1, 3000, 2)):
        stem = f"{ticker}_2012-06-21_34200000_57600000"
        if (SHARED_LOBSTER / f"{stem}_message_{levels}.csv.gz").is_file():
            for kind in ("message", "orderbook"):
                with gzip.open(SHARED_LOBSTER / f"{stem}_{kind}_{levels}.csv.gz", "rt") as src:
                    text = "".join(next(src) for _ in range(lines))
                (folder / f"{stem}_{kind}_{levels}.csv.gz").write_bytes(
                    gzip.compress(text.encode())
                )
        else:
            write_lobster(folder, ticker, *synthetic_lob(lines, levels, seed), levels, gz=True)
    experiment = folder / "lob.yaml"
    experiment.write_text(LOB_TEST_EXPERIMENT.format(folder=folder))
    env = dict(materialized.env)
    pipeline = temp_pipeline(env, experiment, instance=materialized.instance, prepare=False)
    resolved, defs = pipeline.resolved, pipeline.defs
    keys = register_partitions(materialized.instance, lob_source(resolved))
    every = materialized.instance.get_dynamic_partitions(LOB_PARTITIONS.name)
    job = defs.resolve_job_def(LOB_JOB)
    result = job.execute_in_process(
        run_config=resolved.run_config(job_assets(job)),
        instance=materialized.instance,
        raise_on_error=False,
        tags=partition_range_tags(every[0], every[-1]),
    )
    return LobMaterialized(folder, result, keys, defs, resolved, env)
