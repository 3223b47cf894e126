"""Distributed tuning: several processes (on this machine or others) share one Optuna study.

The pipeline's ``base_models`` step is the coordinator: it queues each study's trial budget and
runs trials itself; with ``models.workers`` > 1 it starts that many more ``alphaforge
tune-worker`` processes here. Workers on other machines join the same way, given the problem
file and the same storage. A worker takes queued trials until none is left
(``models.learning.tuning.work``) and logs each as a nested MLflow run under the model's run.

The problem file (``<lake>/tuning/<study>.npz``) holds the model's inputs, the folds and the
study's identity, never a secret: the Optuna storage URL and the MLflow URI come from each
worker's own environment.
"""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import optuna
from dagster import ConfigurableResource

from models.learning.objectives import BookScorer
from models.learning.tuning import (
    HEARTBEAT_S,
    TuningProblem,
    Workers,
    enqueue_budget,
    objective_for,
    open_shared,
    retrying,
    work,
)
from pipelines.atomic import write_atomic
from pipelines.experiment import resolve_env_refs
from pipelines.settings import with_password


def save_problem(path: Path, problem: TuningProblem, **meta: object) -> Path:
    """The problem and ``meta`` (study name, parent run, budget) as one ``.npz``, atomically."""
    train = [np.asarray(tr, np.int64) for tr, _ in problem.splits]
    test = [np.asarray(te, np.int64) for _, te in problem.splits]
    header = {"model": problem.model, "seed": problem.seed, "n_jobs": problem.n_jobs, **meta}
    arrays = {
        "X": problem.X,
        "y": problem.y,
        "dates": problem.dates,
        "label": problem.label,
        "train": np.concatenate(train),
        "train_sizes": np.array([len(t) for t in train]),
        "test": np.concatenate(test),
        "test_sizes": np.array([len(t) for t in test]),
        "meta": np.array(json.dumps(header)),
    }
    if problem.scorer is not None:  # a BookScorer: its arrays and settings travel too
        scorer = problem.scorer
        arrays |= {"scorer_symbols": scorer.symbols, "scorer_costs": scorer.costs}
        header |= {"scorer": {"top_k": scorer.top_k, "every": scorer.every}}
        arrays["meta"] = np.array(json.dumps(header))
    return write_atomic(path, lambda f: np.savez(f, **arrays))


def load_problem(path: Path) -> tuple[TuningProblem, dict]:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        train = np.split(data["train"], np.cumsum(data["train_sizes"])[:-1])
        test = np.split(data["test"], np.cumsum(data["test_sizes"])[:-1])
        problem = TuningProblem(
            meta["model"],
            data["X"],
            data["y"],
            data["dates"],
            data["label"],
            list(zip(train, test, strict=True)),
            meta["seed"],
            meta["n_jobs"],
            BookScorer(data["scorer_symbols"], data["scorer_costs"], **meta["scorer"])
            if "scorer" in meta
            else None,
        )
    return problem, meta


def start_worker(
    path: Path, env: dict[str, str], name: str | None = None, **popen: object
) -> subprocess.Popen:
    """``alphaforge tune-worker`` on the problem file at ``path``, with ``env`` over this
    process's environment (the storage URL may hold a password: it travels there, not in
    argv); output to ``popen``'s ``stdout`` (stderr joins it)."""
    command = [str(Path(sys.executable).parent / "alphaforge"), "tune-worker", str(path)]
    if name:
        command += ["--name", name]
    return subprocess.Popen(command, env=os.environ | env, stderr=subprocess.STDOUT, **popen)


class TuningResource(ConfigurableResource):
    """Where studies live and how more workers start. ``shared`` (prod: PostgreSQL) turns on
    heartbeats, so a worker that dies mid-trial is noticed and its trial run again."""

    storage: str
    tracking_uri: str
    problem_dir: str
    # the PostgreSQL password of the default prod storage, apart from the URL (dagster.EnvVar)
    password: str | None = None
    shared: bool = False
    heartbeat_s: int = HEARTBEAT_S
    join_timeout_s: float = 3600.0

    @property
    def storage_url(self) -> str:
        """The Optuna storage URL with its secrets, resolved now (inside the run)."""
        url = resolve_env_refs(self.storage, "tracking.optuna_storage", os.environ)
        return with_password(url, self.password)

    @property
    def tracking(self) -> str:
        return resolve_env_refs(self.tracking_uri, "tracking.mlflow_uri", os.environ)

    def workers(self, count: int, parent_run_id: str, n_trials: int) -> Workers | None:
        if count < 1:
            return None

        @contextmanager
        def start(study: optuna.Study, problem: TuningProblem) -> Iterator[None]:
            path = save_problem(
                Path(self.problem_dir) / f"{study.study_name}.npz",
                problem,
                study=study.study_name,
                parent_run_id=parent_run_id,
                n_trials=n_trials,
                shared=self.shared,
                heartbeat_s=self.heartbeat_s,
            )
            env = {
                "ALPHAFORGE_OPTUNA_STORAGE": self.storage_url,
                "ALPHAFORGE_MLFLOW_URI": self.tracking,
            }
            logs = [path.with_suffix(f".worker{i}.log") for i in range(count)]
            procs = [start_worker(path, env, stdout=log.open("w")) for log in logs]
            try:
                yield
            finally:
                codes = [p.wait(self.join_timeout_s) for p in procs]
            failed = [(log, c) for log, c in zip(logs, codes, strict=True) if c != 0]
            if failed:
                log, code = failed[0]
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"tuning worker exited with {code} ({log}):\n{tail}")

        return start


def share_study(
    storage: str,
    tracking_uri: str,
    problem: TuningProblem,
    name: str,
    n_trials: int,
    folder: Path,
    heartbeat_s: int = HEARTBEAT_S,
) -> tuple[optuna.Study, "mlflow.MlflowClient", str, Path]:  # noqa: F821
    """What a coordinator prepares before workers join, outside a pipeline run: the study with
    ``n_trials`` queued, a parent MLflow run (in an experiment named ``name``) and the problem
    file. Returns the study, the MLflow client, the parent run id and the file."""
    import mlflow

    study = open_shared(storage, heartbeat_s, name, problem.seed)
    enqueue_budget(study, n_trials)
    client = mlflow.MlflowClient(tracking_uri)
    parent = client.create_run(client.create_experiment(name), run_name=name).info.run_id
    path = save_problem(
        folder / f"{name}.npz",
        problem,
        study=name,
        parent_run_id=parent,
        n_trials=n_trials,
        shared=True,
        heartbeat_s=heartbeat_s,
    )
    return study, client, parent, path


def run_worker(path: Path, storage: str, tracking_uri: str, name: str | None = None) -> int:
    """Run the queued trials of the study in the problem file at ``path``; returns how many
    this worker ran. Used by ``alphaforge tune-worker``."""
    import mlflow

    from pipelines.resources import TrialLogger

    problem, meta = load_problem(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    heartbeat = meta["heartbeat_s"] if meta["shared"] else None
    study = retrying(open_shared, storage, heartbeat, meta["study"], problem.seed)
    worker = name or f"{socket.gethostname()}:{os.getpid()}"
    client = mlflow.MlflowClient(tracking_uri)
    logger = TrialLogger(
        lambda line: print(line, flush=True),
        problem.model,
        meta["n_trials"],
        meta["parent_run_id"],
        client,
        worker=worker,
        score_name="rank_ic" if problem.scorer is None else "net_return",
    )
    try:
        return work(
            study,
            objective_for(problem),
            callbacks=[logger],
            wait_for_running=meta["shared"],
            on_start=lambda n: print(
                f"{problem.model} started trial {n + 1} ({worker})", flush=True
            ),
        )
    finally:
        logger.close()
