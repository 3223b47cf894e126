"""Optuna TPE tuning with median pruning on fold-level scores of purged walk-forward splits."""

import time
from collections.abc import Callable, Sequence

import numpy as np
import optuna

from models.estimators import ModelSpec, Params
from models.metrics import mean_rank_ic
from models.types import Split

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


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
    a poor trial after its first folds. Fold scores and fit time are kept as trial user
    attributes. A study that already exists in ``storage`` is resumed: only the missing
    trials run.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        load_if_exists=True,
    )

    def objective(trial: optuna.Trial) -> float:
        params = spec.search_space(trial)
        scores: list[float] = []
        started = time.perf_counter()
        for fold, (train, test) in enumerate(splits):
            model = spec.build(params, seed, n_jobs).fit(X[train], y[train])
            scores.append(mean_rank_ic(dates[test], model.predict(X[test]), label[test]))
            trial.set_user_attr("fold_scores", scores)
            trial.report(float(np.mean(scores)), fold)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("fit_seconds", time.perf_counter() - started)
        return float(np.mean(scores))

    done = sum(t.state.is_finished() for t in study.trials)
    if n_trials > done:
        study.optimize(objective, n_trials=n_trials - done, callbacks=list(callbacks))
    return study


def best_params(study: optuna.Study) -> Params:
    """The best completed trial's parameters (Optuna raises if none completed)."""
    return dict(study.best_trial.params)
