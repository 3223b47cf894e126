"""The training protocol: a tuning window, purged folds, a final untouched test period.

Time is cut in three. Hyper-parameters are tuned only on rows whose label ends inside the tuning
window (inner purged walk-forward or combinatorial purged CV). Out-of-fold predictions come from
outer walk-forward folds whose test blocks all lie after that window, so neither the fitted
weights nor the chosen hyper-parameters have seen any date they are scored on. The last
``test_days`` dates are the final test period: the registered models are fitted only on rows
whose label ends before it, the meta-learner only on out-of-fold rows before it, and the
champion/challenger decision is taken on it alone.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import optuna
import polars as pl
from sklearn.base import RegressorMixin

from models.backtest.costs import CostSpec, row_costs
from models.learning.cv import purged_combinatorial, purged_walk_forward
from models.learning.dataset import Dataset, assemble, feature_inputs, window_columns
from models.learning.estimators import Params, get_spec
from models.learning.folds import fit_final, fold_fits
from models.learning.objectives import OBJECTIVES, BookScorer
from models.learning.tuning import (
    HEARTBEAT_S,
    TrialCallback,
    TuningProblem,
    Workers,
    best_params,
    splits_fingerprint,
    study_name,
    tune,
)
from models.types import Split

CV_SCHEMES = ("walk_forward", "cpcv")


def horizon_days(dates: np.ndarray, label_end: np.ndarray) -> int:
    """The longest label horizon, in trading days of the panel's calendar. Only a fallback
    purge for labels of unknown horizon: one label spanning a hole in a symbol's history sets
    it (a 396-day hole once swallowed every fold); pass the configured horizon instead."""
    unique = np.unique(dates)
    return int((np.searchsorted(unique, label_end) - np.searchsorted(unique, dates)).max())


def cv_problems(
    n_dates: int,
    *,
    horizon: int,
    tune_fraction: float,
    inner_splits: int,
    outer_splits: int | None,
    test_days: int,
    scheme: str = "walk_forward",
) -> list[str]:
    """What makes these CV settings impossible on a panel of ``n_dates`` dates, one line per
    problem naming the keys to change and the number of dates there are (empty when every
    fold fits). The arithmetic is that of :func:`tuning_window`, :func:`inner_splits`,
    :func:`test_period_start` and :func:`outer_splits`, with the purge ``horizon``; a test
    block must be longer than the purge."""
    there = f"there are {n_dates} dates with features and labels"
    n_tune = int(n_dates * tune_fraction)
    inner_dates = max(n_tune - horizon, 0)  # rows whose label ends inside the tuning window
    problems = []
    if scheme == "walk_forward":
        block = (inner_dates - inner_dates // 2 - horizon) // inner_splits
    else:
        block = inner_dates // inner_splits
    if block <= horizon:
        problems.append(
            f"cv.inner_splits: {inner_splits} {scheme} test blocks in the tuning window "
            f"({inner_dates} dates: cv.tune_fraction = {tune_fraction}) would hold {block} dates "
            f"each, not more than the purge (labels.horizon = {horizon}); {there}: lower "
            "cv.inner_splits, raise cv.tune_fraction, or start the data earlier (data.start_date)"
        )
    if n_dates - test_days <= n_tune:
        problems.append(
            f"cv.test_days: the final test period ({test_days} dates) overlaps the tuning window "
            f"(the first {n_tune} dates, cv.tune_fraction = {tune_fraction}); {there}: lower "
            "cv.test_days or cv.tune_fraction, or start the data earlier (data.start_date)"
        )
    if outer_splits is not None:
        block = (n_dates - n_tune - horizon) // outer_splits
        if block <= horizon:
            problems.append(
                f"cv.outer_splits: {outer_splits} walk-forward test blocks after the tuning "
                f"window ({n_dates - n_tune} dates) would hold {block} dates each, not more than "
                f"the purge (labels.horizon = {horizon}); {there}: lower cv.outer_splits or "
                "cv.tune_fraction, or start the data earlier (data.start_date)"
            )
    return problems


def tuning_window(ds: Dataset, fraction: float) -> tuple[date, np.ndarray]:
    """The tuning window's last date and the mask of rows whose label ends on or before it."""
    unique = np.unique(ds.dates)
    if not 0.1 <= fraction <= 0.9:
        raise ValueError(f"tune_fraction must lie in [0.1, 0.9], got {fraction}")
    end = unique[int(len(unique) * fraction) - 1]
    return end.astype("datetime64[D]").item(), ds.label_end <= end


def test_period_start(ds: Dataset, test_days: int, tune_end: date) -> date:
    """First date of the final test period: the last ``test_days`` dates, after the tuning
    window."""
    unique = np.unique(ds.dates)
    if test_days < 1:
        raise ValueError(f"test_days must be >= 1, got {test_days}")
    start = unique[max(len(unique) - test_days, 0)].astype("datetime64[D]").item()
    if start <= tune_end:
        raise ValueError(
            f"the final test period ({test_days} dates from {start}) overlaps the tuning window "
            f"(to {tune_end}): lower cv.test_days or cv.tune_fraction"
        )
    return start


def inner_splits(
    ds: Dataset,
    mask: np.ndarray,
    n_splits: int,
    scheme: str = "walk_forward",
    horizon: int | None = None,
) -> list[Split]:
    """Purged folds inside the tuning window (positions into ``ds`` rows): walk-forward, or
    combinatorial purged CV over ``n_splits`` blocks, two of them tested at a time, embargoed by
    the label horizon: ``horizon`` trading days of the panel's calendar (the configured one;
    without it, the longest label seen). Each training row is also purged exactly by its own
    label end."""
    rows = np.flatnonzero(mask)
    dates, ends = ds.dates[rows], ds.label_end[rows]
    horizon = horizon_days(dates, ends) if horizon is None else horizon
    if scheme == "walk_forward":
        splits = purged_walk_forward(
            dates, ends, n_splits=n_splits, train_size=len(np.unique(dates)) // 2, purge=horizon
        )
    elif scheme == "cpcv":
        splits = purged_combinatorial(
            dates, ends, n_folds=n_splits, n_test_folds=2, purge=horizon, embargo=horizon
        )
    else:
        raise ValueError(f"unknown cv scheme {scheme!r}; known: {CV_SCHEMES}")
    return [(rows[tr], rows[te]) for tr, te in splits]


def outer_splits(
    ds: Dataset, tune_end: date, n_splits: int, purge: bool = True, horizon: int | None = None
) -> list[Split]:
    """Walk-forward folds whose first training window is the tuning window, purged by
    ``horizon`` trading days (as :func:`inner_splits`). ``purge=False`` exists only so the
    leakage check can be shown to catch it."""
    n_tune = int((np.unique(ds.dates) <= np.datetime64(tune_end)).sum())
    if not purge:
        return purged_walk_forward(
            ds.dates, ds.dates, n_splits=n_splits, train_size=n_tune, purge=0
        )
    return purged_walk_forward(
        ds.dates,
        ds.label_end,
        n_splits=n_splits,
        train_size=n_tune,
        purge=horizon_days(ds.dates, ds.label_end) if horizon is None else horizon,
    )


class ImpossibleCV(ValueError):
    """CV settings whose folds cannot fit the panel; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("impossible CV settings:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class TrainingPlan:
    """Where a training run's dates fall: the tuning window's end, the final test period's
    start, the purged inner folds, the rows the final fit reads, and the tuning score (None:
    the mean per-date Rank IC; else the book's net return)."""

    tune_end: date
    test_start: date
    splits: list[Split]
    fit_rows: np.ndarray
    scorer: BookScorer | None


def plan_training(
    ds: Dataset,
    prices: pl.DataFrame,
    cost_spec: CostSpec,
    *,
    horizon: int,
    tune_fraction: float,
    inner_splits: int,
    outer_splits: int | None,
    test_days: int,
    cv_scheme: str = "walk_forward",
    objective: str = "rank_ic",
    book_top_k: int = 5,
    book_every: int = 5,
) -> TrainingPlan:
    """The protocol's dates and folds for ``ds`` (raises :class:`ImpossibleCV` before any
    tuning when they cannot fit); with ``objective="net_return"`` the trials are scored by the
    net return of the top-``book_top_k`` book rebalanced every ``book_every`` days under
    ``cost_spec``'s costs on ``prices``."""
    problems = cv_problems(
        len(np.unique(ds.dates)),
        horizon=horizon,
        tune_fraction=tune_fraction,
        inner_splits=inner_splits,
        outer_splits=outer_splits,
        test_days=test_days,
        scheme=cv_scheme,
    )
    if problems:
        raise ImpossibleCV(problems)
    tune_end, mask = tuning_window(ds, tune_fraction)
    test_start = test_period_start(ds, test_days, tune_end)
    splits = _inner_splits(ds, mask, inner_splits, cv_scheme, horizon)
    fit_rows = np.flatnonzero(ds.label_end < np.datetime64(test_start))
    scorer = None
    if objective == "net_return":
        keys = ds.frame.select("symbol", "date")
        scorer = BookScorer(
            keys["symbol"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64),
            row_costs(prices, keys, cost_spec),
            book_top_k,
            book_every,
        )
    elif objective != "rank_ic":
        raise ValueError(f"unknown objective {objective!r}; known: {OBJECTIVES}")
    return TrainingPlan(tune_end, test_start, splits, fit_rows, scorer)


_inner_splits = inner_splits  # plan_training's keyword of the same name shadows it


def model_inputs(ds: Dataset, model: str) -> np.ndarray:
    """The matrix ``model`` reads: its columns, over its look-back window."""
    spec = get_spec(model)
    return ds.inputs(spec.columns(ds.feature_names), spec.window)


@dataclass
class BaseModels:
    """Tuned base models: chosen parameters, their CV scores and fits on every row whose label
    ends before the final test period."""

    params: dict[str, Params]
    cv_scores: dict[str, float]
    tune_end: date
    target: str
    feature_names: list[str]
    seed: int
    n_jobs: int
    test_start: date | None = None
    fitted: dict[str, RegressorMixin] = field(default_factory=dict)
    studies: dict[str, str] = field(default_factory=dict)
    n_trials: dict[str, int] = field(default_factory=dict)  # scored trials per study
    horizon: int | None = None  # the label horizon, the purge of the outer folds
    engine: str = "local"  # where they were fitted (models.engine): the OOF fits run there too

    def estimators(self) -> dict[str, RegressorMixin]:
        """Unfitted estimators with the chosen parameters, in a stable order."""
        return {n: get_spec(n).build(p, self.seed, self.n_jobs) for n, p in self.params.items()}

    @property
    def window(self) -> int:
        """The longest look-back window among the models (1 when all are tabular)."""
        return max((get_spec(n).window for n in self.params), default=1)

    @property
    def input_names(self) -> list[str]:
        """Columns of the ensemble's input: every feature over the longest window."""
        return window_columns(self.feature_names, self.window)

    def input_columns(self) -> dict[str, list[int]]:
        """Positions in :attr:`input_names` that each model reads, in its own order."""
        position = {c: i for i, c in enumerate(self.input_names)}
        out = {}
        for name in self.params:
            spec = get_spec(name)
            columns = window_columns(spec.columns(self.feature_names), spec.window)
            out[name] = [position[c] for c in columns]
        return out

    def ensemble_inputs(self, features: pl.DataFrame) -> np.ndarray:
        """The ensemble's input for rows of a feature matrix (windows use earlier rows of the
        same symbol, so pass the history, then pick the rows to score)."""
        return feature_inputs(features, self.feature_names, self.window).astype(np.float64)

    def dataset_inputs(self, ds: Dataset, rows: np.ndarray | None = None) -> np.ndarray:
        """The ensemble's input for the rows ``rows`` (default all) of a dataset, in the
        matrix's dtype: a view of the matrix when the models are tabular and the rows
        contiguous (a final test period is)."""
        return ds.inputs(self.feature_names, self.window, rows)


def tune_and_fit(
    ds: Dataset,
    model: str,
    *,
    splits: Sequence[Split],
    fit_rows: np.ndarray | None,
    n_trials: int,
    seed: int,
    n_jobs: int,
    storage: str | None,
    callbacks: Sequence[TrialCallback] = (),
    shared: bool = False,
    heartbeat_s: int = HEARTBEAT_S,
    workers: Workers | None = None,
    trial_jobs: int | None = None,
    on_tuned: Callable[[optuna.Study], None] | None = None,
    scorer: BookScorer | None = None,
    engine: Any = None,
) -> tuple[Params, float, RegressorMixin | None, optuna.Study]:
    """Tune one model on ``splits``; refit the best parameters on ``fit_rows`` (no refit, and
    ``None`` for the model, when ``fit_rows`` is None).

    Returns the parameters, the best CV score, the refitted model and the study, whose name is
    stable for the same data, splits, target and seed, so a killed run resumes it. ``shared``,
    ``heartbeat_s`` and ``workers`` as for :func:`models.learning.tuning.tune` (several workers on one study);
    ``trial_jobs`` threads per trial fit in each worker (default ``n_jobs``; the refit uses
    ``n_jobs``); ``on_tuned(study)`` is called between the tuning and the refit; ``scorer``
    scores the folds instead of their Rank IC (``models.learning.tuning.TuningProblem``). ``engine``
    (a :class:`models.learning.distributed.DaskEngine`) runs this process's fits on a Dask cluster."""
    spec = get_spec(model)
    X, y = model_inputs(ds, model), ds.y
    name = study_name(
        model,
        data=splits_fingerprint(ds.dates, splits),
        features=spec.columns(ds.feature_names),
        window=spec.window,
        target=ds.target,
        y=float(np.nansum(y)),
        seed=seed,
        # a study scored otherwise is another study (Rank IC studies keep their names)
        **({"scorer": scorer.identity()} if scorer is not None else {}),
    )
    problem = TuningProblem(
        model, X, y, ds.dates, ds.label, splits, seed, trial_jobs or n_jobs, scorer, engine
    )
    study = tune(
        problem,
        n_trials=n_trials,
        storage=storage,
        study_name=name,
        callbacks=callbacks,
        shared=shared,
        heartbeat_s=heartbeat_s,
        workers=workers,
    )
    if on_tuned is not None:
        on_tuned(study)
    params = best_params(study)
    fitted = (
        None if fit_rows is None else fit_final(model, params, X, y, fit_rows, seed, n_jobs, engine)
    )
    return params, float(study.best_value), fitted, study


def oof_frame(
    ds: Dataset,
    base: BaseModels,
    n_splits: int,
    purge: bool = True,
    engine: Any = None,
    on_fold: Callable[[str, int], None] | None = None,
) -> pl.DataFrame:
    """Out-of-fold predictions ``pred_<model>`` on the outer folds, with the fold, the last
    training date and the last training label end of each (the leakage check reads them).

    One model at a time, one fold at a time: each model's inputs and binned folds are held only
    while it fits, each fold's binned rows are freed once it has predicted, and predictions go
    straight into their place in the output. ``on_fold(model, fold)`` is called after each."""
    splits = outer_splits(ds, base.tune_end, n_splits, purge=purge, horizon=base.horizon)
    rows = np.concatenate([te for _, te in splits])
    fold = np.concatenate([np.full(len(te), i) for i, (_, te) in enumerate(splits)])
    starts = np.cumsum([0, *(len(te) for _, te in splits)])
    preds = np.empty((len(rows), len(base.params)))
    for i, (name, params) in enumerate(base.params.items()):
        X = model_inputs(ds, name)
        fits = fold_fits(name, X, ds.y, splits, base.seed, base.n_jobs, engine)
        try:
            for f in range(len(splits)):
                preds[starts[f] : starts[f + 1], i] = fits.predict(params, f)
                fits.release(f)
                if on_fold is not None:
                    on_fold(name, f)
        finally:
            fits.close()
        del X
    train_end = np.array([ds.dates[tr].max() for tr, _ in splits])
    train_label_end = np.array([ds.label_end[tr].max() for tr, _ in splits])
    frame = ds.frame[rows].select("symbol", "date", "label", "label_end", "target")
    return frame.with_columns(
        pl.Series("fold", fold, dtype=pl.Int32),
        pl.Series("train_end", train_end[fold]).cast(pl.Date),
        pl.Series("train_label_end", train_label_end[fold]).cast(pl.Date),
        *(pl.Series(f"pred_{name}", preds[:, i]) for i, name in enumerate(base.params)),
    ).sort("date", "symbol")


def minimal_problem(
    prices: pl.DataFrame,
    alt: pl.DataFrame,
    *,
    model: str = "lightgbm",
    horizon: int = 5,
    tune_fraction: float = 0.6,
    n_splits: int = 3,
    seed: int = 0,
    n_jobs: int = 1,
) -> TuningProblem:
    """A tuning problem on the ``minimal`` feature set of ``prices`` (``[symbol, date, close]``)
    and forward-return labels, with purged folds inside the tuning window: for benchmarks and
    tests of the tuning machinery itself."""
    from models.features import ENGINE, build_feature_matrix
    from models.learning.labels import forward_returns

    features = build_feature_matrix(prices.lazy(), alt.lazy(), feature_set="minimal").collect(
        engine=ENGINE
    )
    ds = assemble(features, forward_returns(prices.lazy(), horizon).collect())
    _, mask = tuning_window(ds, tune_fraction)
    splits = inner_splits(ds, mask, n_splits, horizon=horizon)
    return TuningProblem(
        model, model_inputs(ds, model), ds.y, ds.dates, ds.label, splits, seed, n_jobs
    )
