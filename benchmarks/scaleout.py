"""Distributed tuning: wall time of one Optuna study's fixed trial budget run by 1, 2 and 4
``alphaforge tune-worker`` processes sharing it through PostgreSQL, and the trial-count
invariant (exactly the budget finished, nothing left running or queued, one MLflow run per
finished trial). The speed-up is against the one-worker run measured here, in the same run.

    python -m benchmarks.scaleout [--trials 24] [--workers 1 2 4]

Starts its own PostgreSQL and MLflow server with ``deploy/stack.sh`` (skipped, saying so, when
PostgreSQL is not installed). The problem: LightGBM on the bundled prices' feature matrix, one
thread per worker, on purged walk-forward folds. Each worker's start (imports, about 5 s) is
part of its wall time, as it is in a real run. On this 2-core machine more than two workers
cannot run faster: the table says what they cost.
"""

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import polars as pl
from optuna.trial import TrialState

from models.learning.training import minimal_problem
from models.learning.tuning import TuningProblem
from pipelines.settings import PG_DATABASES, postgres_url
from pipelines.sources import BundledAltSource, BundledPriceSource
from pipelines.tuning import share_study, start_worker

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "deploy" / "stack.sh"
BIN = Path(sys.executable).parent
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bundled_problem() -> TuningProblem:
    prices = BundledPriceSource().load_prices().frame.select("symbol", "date", "close")
    prices = prices.with_columns(pl.col("close").cast(pl.Float64)).filter(pl.col("close") > 0)
    prices = prices.filter(pl.col("date") >= pl.date(2012, 1, 1)).sort("symbol", "date")
    return minimal_problem(prices, BundledAltSource().load_alt_data(), seed=7)


def run_study(env: dict, problem: TuningProblem, folder: Path, workers: int, budget: int):
    name = f"bench-{workers}w-{int(time.time())}"
    url = postgres_url(env, PG_DATABASES["optuna"])
    study, client, parent, path = share_study(
        url, env["ALPHAFORGE_MLFLOW_URI"], problem, name, budget, folder, heartbeat_s=5
    )
    started = time.perf_counter()
    env = env | {"ALPHAFORGE_OPTUNA_STORAGE": url}
    procs = [
        start_worker(path, env, f"w{i}", stdout=subprocess.PIPE, text=True) for i in range(workers)
    ]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - started
    failed = [o for p, o in zip(procs, outs, strict=True) if p.returncode != 0]
    if failed:
        raise SystemExit(f"a worker failed:\n{failed[0][-2000:]}")
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in FINISHED]
    pending = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    runs = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
    )
    names = sorted(r.info.run_name for r in runs)
    invariant = (
        len(finished) == budget
        and not pending
        and names == sorted(f"lightgbm-trial-{t.number}" for t in finished)
    )
    per_worker = [int(o.rsplit("worker done: ", 1)[1].split()[0]) for o in outs]
    fit = sum(t.user_attrs.get("fit_seconds", 0) for t in finished)
    pruned = sum(t.state == TrialState.PRUNED for t in finished)
    return wall, invariant, per_worker, fit, pruned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args(argv)
    if not (shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")):
        print(
            "scale-out benchmark skipped: PostgreSQL is not installed (apt-get install postgresql)"
        )
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    problem = bundled_problem()
    print(
        f"problem: LightGBM on the bundled prices, {len(problem.y):,} rows, "
        f"{problem.X.shape[-1]} features, {len(problem.splits)} folds; budget {args.trials} trials"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stack_env = os.environ | {"MLFLOW": str(BIN / "mlflow")}
        subprocess.run(
            [str(STACK), "start", str(folder), str(_free_port()), str(_free_port())],
            env=stack_env,
            check=True,
            capture_output=True,
        )
        env = dict(
            line.split("=", 1) for line in (folder / "stack.env").read_text().splitlines() if line
        )
        try:
            rows = []
            for workers in args.workers:
                rows.append((workers, *run_study(env, problem, folder, workers, args.trials)))
        finally:
            subprocess.run([str(STACK), "stop", str(folder)], env=stack_env, check=False)
    base = rows[0][1]
    cores = os.cpu_count()
    print(f"\n{cores} cores; speed-up against {rows[0][0]} worker(s), same run\n")
    print(
        "| workers | wall s | speed-up | trials per worker | pruned | fit s (sum) | "
        "fit s per wall s | invariant |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for workers, wall, ok, per_worker, fit, pruned in rows:
        print(
            f"| {workers} | {wall:.1f} | {base / wall:.2f}x | {per_worker} | {pruned} | "
            f"{fit:.1f} | {fit / wall:.2f} | {'holds' if ok else 'BROKEN'} |"
        )
    print(
        "\nThe budget is a trial count, not the same trials: TPE with several workers samples "
        "while others run (constant liar) and prunes differently, so each run fits different "
        "parameters; 'fit s per wall s' is the work done per second."
    )
    return 0 if all(r[2] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
