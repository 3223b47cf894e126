"""Distributed tuning on a real PostgreSQL (and a real ``mlflow server`` backed by it), started
by ``deploy/stack.sh`` from Debian's packages: three workers sharing one study; a worker
killed mid-trial; PostgreSQL stopped mid-study. The whole fast-profile graph on the prod
deployment is ``test_rerun_from_the_logged_config_reproduces_the_metrics`` (it reruns a logged
experiment there and gets the local run's numbers).

Skipped, with the reason, where PostgreSQL is not installed (``.ci/run`` installs it)."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import polars as pl
import pytest
from conftest import HAVE_PG, STACK, random_walk_panel
from optuna.trial import TrialState

from models.learning.training import minimal_problem
from models.learning.tuning import (
    TuningProblem,
)
from pipelines.settings import PG_DATABASES, postgres_url
from pipelines.tuning import TuningResource, share_study, start_worker

BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not HAVE_PG, reason="PostgreSQL is not installed (apt-get install postgresql)"
    ),
]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BUDGET = 9


@pytest.fixture(scope="module")
def stack(pg_stack):
    return pg_stack


def _optuna_url(stack) -> str:
    return postgres_url(stack["env"], PG_DATABASES["optuna"])


@pytest.fixture(scope="module")
def problem() -> TuningProblem:
    """A real tuning problem (LightGBM on purged folds), under a second a trial."""
    panel = random_walk_panel(n_symbols=10, n_days=600, seed=3)
    alt = pl.DataFrame(
        schema={
            "series": pl.String,
            "kind": pl.String,
            "date": pl.Date,
            "available_date": pl.Date,
            "value": pl.Float64,
        }
    )
    return minimal_problem(panel, alt, tune_fraction=0.7, seed=5)


def _shared_study(stack, problem, tmp_path, name: str):
    """A study with BUDGET queued trials, a parent MLflow run and the problem file: what the
    pipeline's coordinator prepares before workers join."""
    return share_study(
        _optuna_url(stack),
        stack["env"]["ALPHAFORGE_MLFLOW_URI"],
        problem,
        name,
        BUDGET,
        tmp_path,
        heartbeat_s=2,  # dead after 6 s without one
    )


def _workers(stack, path: Path, n: int) -> list[subprocess.Popen]:
    env = stack["env"] | {"ALPHAFORGE_OPTUNA_STORAGE": _optuna_url(stack)}
    return [
        start_worker(path, env, f"w{i}", stdout=subprocess.PIPE, text=True, start_new_session=True)
        for i in range(n)
    ]


def _first_trial_line(
    proc: subprocess.Popen, needle: str | None = None, timeout: float = 120
) -> None:
    """Read the worker's output up to its first line holding ``needle``, by default its first
    finished trial's (``lightgbm trial 1/9 complete: ...``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if (needle in line) if needle else re.search(r" trial \d+/\d+ ", line):
            return
        assert line or proc.poll() is None, "worker ended before its first trial"
    raise AssertionError("no trial finished in time")


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    """Every worker's output once it has ended; a worker still going after ``timeout`` is asked
    for its threads' stacks (the worker's SIGUSR1 handler) and killed, and the test fails with
    them."""
    outs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError(f"worker still running after {timeout:.0f} s:\n{out}") from None
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
    """Three workers started by the pipeline's own ``TuningResource`` (what ``models.workers``
    does in ``base_models``) share one study."""
    study, client, parent, _ = _shared_study(stack, problem, tmp_path, "shared-three")
    resource = TuningResource(
        storage=_optuna_url(stack),
        tracking_uri=stack["env"]["ALPHAFORGE_MLFLOW_URI"],
        problem_dir=str(tmp_path / "tuning"),
        shared=True,
        heartbeat_s=2,
    )
    saved = os.environ.copy()
    os.environ.update(stack["env"])  # the spawned workers' environment
    try:
        with resource.workers(3, parent, BUDGET)(study, problem):
            pass  # leaving the block waits for all three
    finally:
        os.environ.clear()
        os.environ.update(saved)
    logs = sorted((tmp_path / "tuning").glob("*.worker*.log"))
    ran = [int(p.read_text().rsplit("worker done: ", 1)[1].split()[0]) for p in logs]
    assert len(ran) == 3 and sum(ran) == BUDGET and sorted(ran)[1] >= 1, ran
    _consistent(study, client, parent)
    runs = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
    )
    assert len({r.data.tags["alphaforge.worker"] for r in runs}) == sum(n > 0 for n in ran)
    print("trials per worker:", ran)


def _kill_on_second_start(procs: list[subprocess.Popen], timeout: float = 120) -> int:
    """Kill whichever worker starts a second trial first, 0.3 s into it, and return its index.

    Any one worker may finish its first trial after the others have taken the rest of the
    queue (a trial takes under a second), so the victim is chosen by what the workers print,
    not beforehand: with BUDGET trials over three workers one of them starts at least three."""
    lines: queue.Queue[tuple[int, str]] = queue.Queue()

    def read(i: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            lines.put((i, line))

    for i, proc in enumerate(procs):
        threading.Thread(target=read, args=(i, proc), daemon=True).start()
    starts = [0] * len(procs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            i, line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if " started trial " in line:
            starts[i] += 1
            if starts[i] == 2:
                time.sleep(0.3)
                os.killpg(procs[i].pid, signal.SIGKILL)
                procs[i].wait()
                return i
    raise AssertionError(f"no worker started a second trial in time: {starts}")


def test_a_worker_killed_mid_trial_leaves_the_study_consistent(stack, problem, tmp_path):
    study, client, parent, path = _shared_study(stack, problem, tmp_path, "shared-kill")
    procs = _workers(stack, path, 3)
    victim = _kill_on_second_start(procs)
    for i, proc in enumerate(procs):
        if i != victim:  # the reader threads hold their output; the exit code is the check
            assert proc.wait(timeout=300) == 0
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
