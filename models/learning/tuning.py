"""Optuna TPE tuning with median pruning on fold-level scores of purged splits.

A study lives in Optuna storage under a name derived from what it tunes (``study_name``), so a
run killed mid-study and started again resumes it: finished trials are kept, trials the crash
left RUNNING are marked FAIL, and only the missing trials run.

The trial budget is a queue: the coordinator enqueues exactly the missing trials as WAITING
(``enqueue_budget``) and any number of workers, on this machine or others sharing an RDB
storage, take them one at a time (``work``): a trial is claimed by Optuna's own atomic
WAITING → RUNNING transition, so none runs twice and none is created beyond the budget. A
worker that dies mid-trial stops its heartbeat; another worker fails the trial after the grace
period and Optuna's ``RetryHeartbeatStaleTrialCallback`` enqueues a copy, so the budget still completes.
A storage outage (PostgreSQL restarting) is waited out and the interrupted trial retried.
"""

import hashlib
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from models.learning.estimators import Params, get_spec
from models.learning.folds import FoldFits, fold_fits
from models.learning.metrics import mean_rank_ic
from models.types import Split

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]
# starts more workers on a study; waits for them when the context exits
Workers = Callable[[optuna.Study, "TuningProblem"], AbstractContextManager]


def study_name(model: str, **identity: Any) -> str:
    """A stable study name for ``model`` and everything that makes its trials comparable (data
    fingerprint, splits, target, seed): the same inputs resume the same study."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    return f"{model}-{digest.hexdigest()[:12]}"


def splits_fingerprint(dates: np.ndarray, splits: Sequence[Split]) -> str:
    """A digest of the rows and the fold boundaries, for :func:`study_name`."""
    h = hashlib.sha256(np.asarray(dates).astype("datetime64[D]").astype(np.int64).tobytes())
    for train, test in splits:
        h.update(np.asarray(train, np.int64).tobytes())
        h.update(np.asarray(test, np.int64).tobytes())
    return h.hexdigest()[:16]


log = logging.getLogger(__name__)

# A worker records a heartbeat this often while it runs a trial (RDB storage); a RUNNING trial
# whose heartbeat is older than three intervals (the grace period) belongs to a dead worker.
# Workers read the interval from the problem file, so all of a study's workers agree on both.
HEARTBEAT_S = 10


def open_storage(
    url: str | None, heartbeat_s: int | None = None
) -> str | optuna.storages.BaseStorage | None:
    """Optuna storage from a URL: ``None`` keeps the study in memory; ``journal:///path`` is an
    append-only journal file (Optuna's ``JournalFileBackend``: one write per event, several
    processes on one machine may share it); anything else is an RDB URL (``sqlite:///...``,
    ``postgresql://...``) for Optuna's own ``RDBStorage``, which with ``heartbeat_s`` records
    workers' heartbeats and retries the trials of dead ones."""
    if url is None:
        return None
    if url.startswith("journal://"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url.removeprefix("journal://")))
    if heartbeat_s is None:
        return url
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            # a connection the server dropped (a restart) is replaced, not reused
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=heartbeat_s,
            grace_period=3 * heartbeat_s,
            heartbeat_stale_trial_callback=_retry_callback(),
        )


def _retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Queue one copy of a failed trial (up to three retries of the same trial)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)


def open_study(
    storage: str | optuna.storages.BaseStorage | None, name: str, seed: int
) -> optuna.Study:
    """The study ``name`` (created if missing) with the sampler and pruner every worker uses."""
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=ReplayableTPESampler(seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        load_if_exists=True,
    )


def open_shared(url: str | None, heartbeat_s: int | None, name: str, seed: int) -> optuna.Study:
    """:func:`open_study` on :func:`open_storage` (an RDB storage connects when it is made:
    pass this to :func:`retrying` to wait out a database that is down)."""
    return open_study(open_storage(url, heartbeat_s), name, seed)


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PENDING = (TrialState.WAITING, TrialState.RUNNING)


def enqueue_budget(study: optuna.Study, n_trials: int) -> int:
    """Enqueue the trials still missing from a budget of ``n_trials`` finished ones (trials
    already queued or running count as on their way); returns how many were enqueued."""
    have = len(study.get_trials(deepcopy=False, states=FINISHED + PENDING))
    for _ in range(max(0, n_trials - have)):
        study.enqueue_trial({})  # no fixed parameters: the sampler chooses them all
    return max(0, n_trials - have)


# What a lost database connection raises: Optuna wraps SQLAlchemy's errors in
# StorageInternalError; a read outside a transaction may surface SQLAlchemy's own.
def _storage_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import OperationalError

    return (optuna.exceptions.StorageInternalError, OperationalError)


PATIENCE_S = 120.0


def retrying(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, retried every half second through a storage outage of up to
    ``PATIENCE_S`` seconds (a database restart), then the outage's error."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            return call(*args, **kwargs)
        except _storage_errors() as err:
            if time.monotonic() > deadline:
                raise
            log.warning("storage unavailable (%s); retrying", type(err).__name__)
            time.sleep(0.5)


def _claim(study: optuna.Study) -> int | None:
    """Move one WAITING trial to RUNNING, atomically in the storage (the same transition
    ``Study.ask`` uses for enqueued trials); None when none is waiting."""
    storage = study._storage
    for trial in storage.get_all_trials(
        study._study_id, deepcopy=False, states=(TrialState.WAITING,)
    ):
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                return trial._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker claimed and finished it meanwhile
    return None


def _heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats of the study's storage; None when it records none."""
    return getattr(study._storage, "get_heartbeat_interval", lambda: None)()


@contextmanager
def _heartbeat(study: optuna.Study, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat every interval while it runs (RDB storage with
    heartbeats on; otherwise nothing). A missed beat during an outage is only logged."""
    storage = study._storage
    interval = _heartbeat_interval(study)
    if not interval:
        yield
        return
    stop = threading.Event()

    def record() -> None:
        try:
            storage.record_heartbeat(trial_id)
        except _storage_errors():
            log.warning("heartbeat of trial %s missed: storage unavailable", trial_id)

    # The first beat is written before the trial starts: Optuna only fails a RUNNING trial whose
    # heartbeat is stale, never one that has none, so a worker killed before its thread's first
    # write left the trial RUNNING for ever and every other worker waiting on it (the suite's
    # killed-worker test hung so under load, 0.3 s after the victim announced its trial). What
    # is left is the moment between the claim and this write.
    record()

    def beat() -> None:
        while not stop.wait(interval):
            record()

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def work(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    callbacks: Sequence[TrialCallback] = (),
    wait_for_running: bool = True,
    poll_s: float = 1.0,
    on_start: Callable[[int], None] | None = None,
) -> int:
    """Run the study's WAITING trials until none is left; returns how many this worker ran;
    ``on_start(number)`` is called when a claimed trial starts.

    With ``wait_for_running`` a worker that finds the queue empty waits while other workers'
    trials are RUNNING: if one of them dies, its trial comes back (heartbeat, retry callback)
    and is run here. A trial interrupted by a storage outage is run again once the storage is
    back (as a copy, once); an error in the objective fails the trial and is raised."""
    heartbeat = bool(_heartbeat_interval(study))
    ran = 0
    while True:
        if heartbeat:
            retrying(optuna.storages.fail_stale_trials, study)
        trial_id = retrying(_claim, study)
        if trial_id is None:
            running = retrying(study.get_trials, deepcopy=False, states=(TrialState.RUNNING,))
            if not (wait_for_running and running):
                return ran
            time.sleep(poll_s)
            continue
        trial = retrying(optuna.Trial, study, trial_id)
        value, state = None, TrialState.COMPLETE
        try:
            with _heartbeat(study, trial_id):
                if on_start is not None:
                    on_start(trial.number)
                value = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except _storage_errors():
            # the outage cut this trial off. With heartbeats, leave it: its heartbeat has
            # stopped, so after the grace period exactly one worker fails it and queues a copy
            # (failing it here too could queue two). Without, this is the only worker.
            if not heartbeat:
                failed = retrying(study.tell, trial, state=TrialState.FAIL, skip_if_finished=True)
                retrying(_retry_callback(), study, failed)
            continue
        except BaseException:
            retrying(study.tell, trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        if state == TrialState.PRUNED:
            value = None
        frozen = retrying(study.tell, trial, value, state, skip_if_finished=True)
        if frozen.state != state:
            continue  # failed meanwhile by another worker (missed heartbeats); a copy reruns it
        ran += 1
        for callback in callbacks:
            callback(study, frozen)


def fail_stale_trials(study: optuna.Study) -> int:
    """Mark trials a killed process left RUNNING as FAIL; returns how many. Call only when no
    other worker runs this study (the pipeline holds the run lock)."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return len(stale)


def _keep(trial: optuna.Trial, scores: list[float], fit_seconds: float) -> None:
    """Fold scores and pure fit seconds as user attributes, written once per trial (each write
    is a storage transaction)."""
    trial.set_user_attr("fold_scores", scores)
    trial.set_user_attr("fit_seconds", fit_seconds)


class ReplayableTPESampler(optuna.samplers.TPESampler):
    """TPE whose draws for a trial depend only on the seed and on the trials finished before
    it, not on how many processes it took to get there: a study resumed after a crash samples
    exactly what the uninterrupted study would have (a trial the crash cut off is sampled again
    from the same state). Optuna's own sampler keeps one random stream per process instead."""

    def __init__(self, seed: int):
        # constant liar: with several workers, running trials count as bad ones, so concurrent
        # trials spread out (with one worker no other trial is running and nothing changes)
        super().__init__(seed=seed, constant_liar=True)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False, states=FINISHED + (TrialState.RUNNING,))
        finished = sum(t.state in FINISHED for t in trials)
        # trials other workers started before this one: concurrent trials must not draw alike
        ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in trials)
        self._rng.rng.seed(self._base_seed + finished + 7919 * ahead)
        self._random_sampler._rng.rng.seed(self._base_seed + 1_000_003 + finished + 7919 * ahead)
        super().before_trial(study, trial)


@dataclass(frozen=True)
class TuningProblem:
    """Everything a worker needs to run trials of one study: the model, its inputs and the
    folds. The coordinator hands it to workers in other processes or on other machines."""

    model: str
    X: np.ndarray
    y: np.ndarray
    dates: np.ndarray
    label: np.ndarray
    splits: Sequence[Split]
    seed: int
    n_jobs: int = 1
    # a fold's score from (dates, predictions, labels, row positions): None is the mean
    # per-date Rank IC; models.learning.objectives.BookScorer the net return of the book it builds
    scorer: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float] | None = None
    # where the fits run: None for this process, or a models.learning.distributed.DaskEngine (not part
    # of a problem file: a worker process fits locally)
    engine: Any = None

    def fold_fits(self) -> FoldFits:
        """The fitter that holds the problem's binned folds across trials."""
        return fold_fits(
            self.model, self.X, self.y, self.splits, self.seed, self.n_jobs, self.engine
        )


def fold_score(problem: TuningProblem, test: np.ndarray, pred: np.ndarray) -> float:
    """One fold's score: the mean per-date Rank IC of ``pred`` on the test rows ``test``, or
    the problem's ``scorer`` (the net return of the book it builds)."""
    if problem.scorer is None:
        return mean_rank_ic(problem.dates[test], pred, problem.label[test])
    return problem.scorer(problem.dates[test], pred, problem.label[test], test)


def objective_for(
    problem: TuningProblem, folds: FoldFits | None = None
) -> Callable[[optuna.Trial], float]:
    """The mean fold score (:func:`fold_score`) of the problem's model over the test blocks of
    its splits.

    Each fold's score is reported to Optuna as the running mean, so the median pruner can stop
    a poor trial after its first folds. Fold scores and pure fit-and-predict seconds are kept as
    trial user attributes. ``folds`` (default: the problem's own) keeps each fold's binned rows
    between trials; whoever passes it frees it."""
    spec = get_spec(problem.model)
    folds = folds if folds is not None else problem.fold_fits()

    def objective(trial: optuna.Trial) -> float:
        params = spec.search_space(trial)
        scores: list[float] = []
        fit_seconds = 0.0
        for fold, (_, test) in enumerate(problem.splits):
            started = time.perf_counter()
            pred = folds.predict(params, fold)
            fit_seconds += time.perf_counter() - started
            scores.append(fold_score(problem, test, pred))
            trial.report(float(np.mean(scores)), fold)
            if trial.should_prune():
                _keep(trial, scores, fit_seconds)
                raise optuna.TrialPruned()
        _keep(trial, scores, fit_seconds)
        return float(np.mean(scores))

    return objective


def tune(
    problem: TuningProblem,
    *,
    n_trials: int,
    storage: str | None,
    study_name: str,
    callbacks: Sequence[TrialCallback] = (),
    shared: bool = False,
    heartbeat_s: int = HEARTBEAT_S,
    workers: Workers | None = None,
) -> optuna.Study:
    """Maximise the mean per-date Rank IC of the problem's model (:func:`objective_for`) on
    ``n_trials`` trials. A study that already exists in ``storage`` is resumed: only the missing
    trials run. A model with nothing to tune runs one trial.

    ``shared=False``: this process is the study's only worker (the pipeline holds the run
    lock), so trials left RUNNING are a crash's and are failed at once. ``shared=True``: other
    workers may be running (RDB storage with heartbeats every ``heartbeat_s``); dead ones are
    found by heartbeat. ``workers(study, problem)``, entered once the budget is queued, starts
    more workers on the study and, on exit, waits for them: this process works through the
    queue beside them, so every trial has finished when ``tune`` returns."""
    study = retrying(
        open_shared, storage, heartbeat_s if shared else None, study_name, problem.seed
    )
    if not shared:
        fail_stale_trials(study)
    retrying(enqueue_budget, study, n_trials if get_spec(problem.model).tunable else 1)
    folds = problem.fold_fits()
    try:
        with workers(study, problem) if workers is not None else nullcontext():
            objective = objective_for(problem, folds)
            work(study, objective, callbacks=callbacks, wait_for_running=shared)
    finally:
        folds.close()  # the binned folds are not needed past the trials
    return study


def best_params(study: optuna.Study) -> Params:
    """The best completed trial's parameters (Optuna raises if none completed)."""
    return dict(study.best_trial.params)
