"""The prod deployment on a real PostgreSQL (and a real ``mlflow server`` backed by it), started
by ``deploy/stack.sh`` from Debian's packages: the whole fast-profile graph; three tuning
workers sharing one study; a worker killed mid-trial; PostgreSQL restarted mid-study.

Skipped, with the reason, where PostgreSQL is not installed (``.ci/run`` installs it)."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import polars as pl
import pytest
from conftest import random_walk_panel
from optuna.trial import TrialState

from models.dataset import assemble
from models.features import build_feature_matrix
from models.labels import forward_returns
from models.training import inner_splits, model_inputs, tuning_window
from models.tuning import TuningProblem, enqueue_budget, open_storage, open_study
from pipelines.settings import PG_DATABASES, postgres_url
from pipelines.tuning import save_problem

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "stack.sh"
BIN = Path(sys.executable).parent
HAVE_PG = bool(shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not HAVE_PG, reason="PostgreSQL is not installed (apt-get install postgresql)"
    ),
]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BUDGET = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """PostgreSQL and the MLflow server on free loopback ports; the client environment."""
    folder = tmp_path_factory.mktemp("stack")
    env = os.environ | {"MLFLOW": str(BIN / "mlflow"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    started = subprocess.run(
        [str(STACK), "start", str(folder), str(_free_port()), str(_free_port())],
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


def _optuna_url(stack) -> str:
    return postgres_url(stack["env"], PG_DATABASES["optuna"])


@pytest.fixture(scope="module")
def problem() -> TuningProblem:
    """A real tuning problem (LightGBM on purged folds), about a second a trial."""
    panel = random_walk_panel(n_symbols=12, n_days=700, seed=3)
    alt = pl.DataFrame(
        schema={
            "series": pl.String,
            "kind": pl.String,
            "date": pl.Date,
            "available_date": pl.Date,
            "value": pl.Float64,
        }
    )
    features = build_feature_matrix(panel.lazy(), alt.lazy(), feature_set="minimal").collect()
    ds = assemble(features, forward_returns(panel.lazy(), 5).collect())
    _, mask = tuning_window(ds, 0.7)
    splits = inner_splits(ds, mask, 3)
    X = model_inputs(ds, "lightgbm")
    return TuningProblem("lightgbm", X, ds.y, ds.dates, ds.label, splits, seed=5, n_jobs=1)


def _shared_study(stack, problem, tmp_path, name: str):
    """A study with BUDGET queued trials, a parent MLflow run and the problem file: what the
    pipeline's coordinator prepares before workers join."""
    storage = open_storage(_optuna_url(stack), heartbeat_s=1, grace_s=3)
    study = open_study(storage, name, problem.seed)
    assert enqueue_budget(study, BUDGET) == BUDGET
    client = mlflow.MlflowClient(stack["env"]["ALPHAFORGE_MLFLOW_URI"])
    experiment = client.create_experiment(name)
    parent = client.create_run(experiment, run_name=f"{name}-parent").info.run_id
    path = save_problem(
        tmp_path / f"{name}.npz",
        problem,
        study=name,
        parent_run_id=parent,
        n_trials=BUDGET,
        shared=True,
        heartbeat_s=1,
    )
    return study, client, parent, path


def _workers(stack, path: Path, n: int) -> list[subprocess.Popen]:
    env = os.environ | stack["env"] | {"ALPHAFORGE_OPTUNA_STORAGE": _optuna_url(stack)}
    return [
        subprocess.Popen(
            [str(BIN / "alphaforge"), "tune-worker", str(path), "--name", f"w{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for i in range(n)
    ]


def _first_trial_line(proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if " trial " in line:
            return
        assert line or proc.poll() is None, "worker ended before its first trial"
    raise AssertionError("no trial finished in time")


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    outs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        outs.append(out)
    return outs


def _consistent(study: optuna.Study, client, parent: str) -> list[optuna.trial.FrozenTrial]:
    """The invariants after any failure: exactly the budget finished, nothing left running or
    queued, every failed trial run again, and one MLflow run per finished trial, no more."""
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == BUDGET
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retried = {t.system_attrs.get("failed_trial") for t in finished}
    for failed in (t for t in trials if t.state == TrialState.FAIL):
        assert failed.number in retried, f"trial {failed.number} failed and was not retried"
    runs = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
    )
    names = sorted(r.info.run_name for r in runs)
    assert names == sorted(f"lightgbm-trial-{t.number}" for t in finished)
    return finished


def test_three_workers_share_one_study_without_lost_or_duplicated_trials(stack, problem, tmp_path):
    study, client, parent, path = _shared_study(stack, problem, tmp_path, "shared-three")
    outs = _finish(_workers(stack, path, 3))
    ran = [int(out.rsplit("worker done: ", 1)[1].split()[0]) for out in outs]
    assert sum(ran) == BUDGET and all(n >= 1 for n in ran), ran
    _consistent(study, client, parent)
    runs = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
    )
    assert {r.data.tags["alphaforge.worker"] for r in runs} == {"w0", "w1", "w2"}


def test_a_worker_killed_mid_trial_leaves_the_study_consistent(stack, problem, tmp_path):
    study, client, parent, path = _shared_study(stack, problem, tmp_path, "shared-kill")
    procs = _workers(stack, path, 3)
    victim = procs[0]
    _first_trial_line(victim)  # it finished one trial and is inside the next
    time.sleep(0.3)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    _finish(procs[1:])
    _consistent(study, client, parent)
    failed = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]
    assert len(failed) == 1  # the trial it was running, failed by heartbeat and run again


def test_postgres_restarting_mid_study_ends_in_a_clean_retry(stack, problem, tmp_path):
    study, client, parent, path = _shared_study(stack, problem, tmp_path, "shared-restart")
    procs = _workers(stack, path, 3)
    _first_trial_line(procs[0])
    # down for 3 s: every worker's next heartbeat (each second) or storage call meets it
    restarted = subprocess.run(
        [str(STACK), "restart-db", str(stack["folder"]), "3"], capture_output=True, text=True
    )
    assert restarted.returncode == 0, restarted.stderr
    outs = _finish(procs)
    assert all("storage unavailable" in out for out in outs)  # each one met the outage
    _consistent(study, client, parent)  # and waited it out: budget done, nothing twice


def test_whole_fast_graph_on_postgres_dagster_mlflow_and_optuna(stack, tmp_path):
    """``alphaforge run`` in the prod deployment: the instance in PostgreSQL, steps in
    processes of their own (multiprocess executor), two tuning workers per study."""
    home = tmp_path / "home"
    env = (
        os.environ
        | stack["env"]
        | {"ALPHAFORGE_HOME": str(home), "ALPHAFORGE__MODELS__WORKERS": "2"}
    )
    env.pop("ALPHAFORGE_OPTUNA_STORAGE", None)
    run = subprocess.run(
        [str(BIN / "alphaforge"), "run", "--profile", "fast"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    check = subprocess.run(
        [sys.executable, "-c", INSPECT],
        env=env | {"DAGSTER_HOME": str(home / "dagster")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    facts = dict(line.split("=", 1) for line in check.stdout.splitlines() if "=" in line)
    assert facts["storage"] == "PostgresRunStorage"
    assert facts["status"] == "SUCCESS"
    assert int(facts["step_pids"]) > 1  # steps ran in processes of their own

    url = _optuna_url(stack)
    names = optuna.get_all_study_names(url)
    assert {n.split("-")[0] for n in names} >= {"lightgbm", "xgboost"}
    client = mlflow.MlflowClient(stack["env"]["ALPHAFORGE_MLFLOW_URI"])
    experiment = client.get_experiment_by_name("alphaforge")
    for name in (n for n in names if n.startswith(("lightgbm-", "xgboost-"))):
        study = optuna.load_study(study_name=name, storage=url)
        finished = [t for t in study.trials if t.state in FINISHED]
        assert len(finished) == 10  # the fast profile's budget, no more, no less
        runs = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`optuna.study` = '{name}'"
        )
        trial_runs = [r for r in runs if "optuna.state" in r.data.tags]  # not the model's run
        assert len(trial_runs) == 10
        # the pipeline's own process and the worker it started both ran trials
        assert len({r.data.tags["alphaforge.worker"] for r in trial_runs}) == 2
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`alphaforge.parent` = 'true'"
    )
    assert len(parents) == 1  # one parent although steps ran in several processes
    assert client.get_run(parents[0].info.run_id).data.params["models.workers"] == "2"


INSPECT = """
from dagster import DagsterInstance, DagsterEventType, EventRecordsFilter
instance = DagsterInstance.get()
record = instance.get_run_records(limit=1)[0]
print("storage=" + type(instance.run_storage).__name__)
print("status=" + record.dagster_run.status.value)
events = instance.get_records_for_run(record.dagster_run.run_id, of_type=DagsterEventType.STEP_START).records
print("step_pids=" + str(len({e.event_log_entry.dagster_event.pid for e in events})))
"""
