"""The training protocol: a tuning window, purged walk-forward folds after it, final refits.

Time is cut in two. Hyper-parameters are tuned only on rows whose label ends inside the tuning
window (inner purged walk-forward). Out-of-fold predictions come from outer walk-forward folds
whose test blocks all lie after that window, so neither the fitted weights nor the chosen
hyper-parameters have seen any date they are scored on.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
from sklearn.base import RegressorMixin

from models.cv import purged_walk_forward
from models.dataset import Dataset
from models.estimators import Params, get_spec
from models.stacking import out_of_fold_predictions
from models.tuning import TrialCallback, best_params, tune
from models.types import Split


def horizon_days(dates: np.ndarray, label_end: np.ndarray) -> int:
    """The longest label horizon, in trading days of the panel's calendar."""
    unique = np.unique(dates)
    return int((np.searchsorted(unique, label_end) - np.searchsorted(unique, dates)).max())


def tuning_window(ds: Dataset, fraction: float) -> tuple[date, np.ndarray]:
    """The tuning window's last date and the mask of rows whose label ends on or before it."""
    unique = np.unique(ds.dates)
    if not 0.1 <= fraction <= 0.9:
        raise ValueError(f"tune_fraction must lie in [0.1, 0.9], got {fraction}")
    end = unique[int(len(unique) * fraction) - 1]
    return end.astype("datetime64[D]").item(), ds.label_end <= end


def inner_splits(ds: Dataset, mask: np.ndarray, n_splits: int) -> list[Split]:
    """Purged walk-forward folds inside the tuning window (positions into ``ds`` rows)."""
    rows = np.flatnonzero(mask)
    dates, ends = ds.dates[rows], ds.label_end[rows]
    splits = purged_walk_forward(
        dates,
        ends,
        n_splits=n_splits,
        train_size=len(np.unique(dates)) // 2,
        purge=horizon_days(dates, ends),
    )
    return [(rows[tr], rows[te]) for tr, te in splits]


def outer_splits(ds: Dataset, tune_end: date, n_splits: int) -> list[Split]:
    """Walk-forward folds whose first training window is the tuning window."""
    n_tune = int((np.unique(ds.dates) <= np.datetime64(tune_end)).sum())
    return purged_walk_forward(
        ds.dates,
        ds.label_end,
        n_splits=n_splits,
        train_size=n_tune,
        purge=horizon_days(ds.dates, ds.label_end),
    )


@dataclass
class BaseModels:
    """Tuned base models: chosen parameters, their CV scores and refits on every labelled row."""

    params: dict[str, Params]
    cv_scores: dict[str, float]
    tune_end: date
    target: str
    feature_names: list[str]
    seed: int
    n_jobs: int
    fitted: dict[str, RegressorMixin] = field(default_factory=dict)
    studies: dict[str, str] = field(default_factory=dict)

    def estimators(self) -> dict[str, RegressorMixin]:
        """Unfitted estimators with the chosen parameters, in a stable order."""
        return {n: get_spec(n).build(p, self.seed, self.n_jobs) for n, p in self.params.items()}


def tune_and_fit(
    ds: Dataset,
    model: str,
    *,
    splits: Sequence[Split],
    n_trials: int,
    seed: int,
    n_jobs: int,
    storage: str | None,
    study_name: str,
    callbacks: Sequence[TrialCallback] = (),
) -> tuple[Params, float, RegressorMixin]:
    """Tune one model on ``splits``; refit the best parameters on every row of ``ds``."""
    spec = get_spec(model)
    X, y = ds.X, ds.y
    study = tune(
        spec,
        X,
        y,
        ds.dates,
        ds.label,
        splits,
        n_trials=n_trials,
        seed=seed,
        storage=storage,
        study_name=study_name,
        n_jobs=n_jobs,
        callbacks=callbacks,
    )
    params = best_params(study)
    return params, float(study.best_value), spec.build(params, seed, n_jobs).fit(X, y)


def oof_frame(ds: Dataset, base: BaseModels, n_splits: int) -> pl.DataFrame:
    """Out-of-fold predictions ``pred_<model>`` on the outer folds, with fold and train end."""
    splits = outer_splits(ds, base.tune_end, n_splits)
    rows, fold, preds = out_of_fold_predictions(base.estimators(), ds.X, ds.y, splits)
    train_end = np.array([ds.dates[tr].max() for tr, _ in splits])
    frame = ds.frame[rows].select("symbol", "date", "label", "label_end", "target")
    return frame.with_columns(
        pl.Series("fold", fold, dtype=pl.Int32),
        pl.Series("train_end", train_end[fold]).cast(pl.Date),
        *(pl.Series(f"pred_{name}", preds[:, i]) for i, name in enumerate(base.params)),
    ).sort("date", "symbol")
