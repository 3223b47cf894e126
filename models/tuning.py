"""Optuna TPE tuning with median pruning on fold-level scores of purged splits.

A study lives in Optuna storage under a name derived from what it tunes (``study_name``), so a
run killed mid-study and started again resumes it: finished trials are kept, trials the crash
left RUNNING are marked FAIL, and only the missing trials run. Several workers may share one
study through an RDB storage URL.
"""

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from models.estimators import ModelSpec, Params
from models.metrics import mean_rank_ic
from models.types import Split

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


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


def open_storage(url: str | None) -> str | optuna.storages.BaseStorage | None:
    """Optuna storage from a URL: ``None`` keeps the study in memory; ``journal:///path`` is an
    append-only journal file (Optuna's ``JournalFileBackend``: one write per event, several
    processes on one machine may share it); anything else is an RDB URL (``sqlite:///...``,
    ``postgresql://...``) for Optuna's own ``RDBStorage``."""
    if url is None or not url.startswith("journal://"):
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(url.removeprefix("journal://")))


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
        super().__init__(seed=seed)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        finished = len(
            study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        )
        self._rng.rng.seed(self._base_seed + finished)
        self._random_sampler._rng.rng.seed(self._base_seed + 1_000_003 + finished)
        super().before_trial(study, trial)


def tune(
    spec: ModelSpec,
    X: np.ndarray,
    y: np.ndarray,
    dates: np.ndarray,
    label: np.ndarray,
    splits: Sequence[Split],
    *,
    n_trials: int,
    seed: int,
    storage: str | None,
    study_name: str,
    n_jobs: int = 1,
    callbacks: Sequence[TrialCallback] = (),
) -> optuna.Study:
    """Maximise the mean per-date Rank IC of ``spec`` over the test blocks of ``splits``.

    Each fold's score is reported to Optuna as the running mean, so the median pruner can stop
    a poor trial after its first folds. Fold scores and pure fit-and-predict seconds are kept as
    trial user attributes. A study that already exists in ``storage`` is resumed: only the
    missing trials run. A model with nothing to tune runs one trial.
    """
    study = optuna.create_study(
        storage=open_storage(storage),
        study_name=study_name,
        direction="maximize",
        sampler=ReplayableTPESampler(seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        load_if_exists=True,
    )
    fail_stale_trials(study)

    def objective(trial: optuna.Trial) -> float:
        params = spec.search_space(trial)
        scores: list[float] = []
        fit_seconds = 0.0
        for fold, (train, test) in enumerate(splits):
            started = time.perf_counter()
            model = spec.build(params, seed, n_jobs).fit(X[train], y[train])
            pred = model.predict(X[test])
            fit_seconds += time.perf_counter() - started
            scores.append(mean_rank_ic(dates[test], pred, label[test]))
            trial.report(float(np.mean(scores)), fold)
            if trial.should_prune():
                _keep(trial, scores, fit_seconds)
                raise optuna.TrialPruned()
        _keep(trial, scores, fit_seconds)
        return float(np.mean(scores))

    wanted = n_trials if spec.tunable else 1
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    if wanted > done:
        study.optimize(objective, n_trials=wanted - done, callbacks=list(callbacks))
    return study


def best_params(study: optuna.Study) -> Params:
    """The best completed trial's parameters (Optuna raises if none completed)."""
    return dict(study.best_trial.params)
