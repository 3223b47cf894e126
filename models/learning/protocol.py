"""A peer's benchmark protocol: fixed train / valid / test dates, its label, its scores.

Qlib's benchmarks train on 2000-2014, stop early and choose on 2015-2016 (valid) and report the
test period once, against ``Ref($close, -2) / Ref($close, -1) - 1``: the return from the next
close to the one after, what a book that trades at the next close earns. This module runs that
protocol on the pipeline's own pieces (``models.learning.estimators``, ``models.learning.tuning``,
``models.learning.label_transforms``) and keeps it honest by construction:

- every variant (model, training label, label transform, feature transform, sample weights,
  training window, seeds, Optuna trials) is fitted on rows whose *training* label ends on or
  before ``train_end`` and scored on the valid block; every one is a trial (``Trial``) and
  counted. With ``Periods.folds`` > 1 it is also fitted at earlier origins (the split moved back
  by the valid block's length) and scored on all the valid blocks together: a two-year block of
  a hundred names gives a Rank IC a standard error about the size of the differences between
  variants, and the choices were noise (issue 28's first run);
- every choice (data settings, the best variant of each model family, the meta-learner and its
  weights) reads valid-period predictions and labels only; the test period's predictions are
  made by the fitted models and scored once, after everything is chosen (``holdout_scores``).
  ``tests/unit/learning/test_protocol.py`` checks that perturbing the test period's labels changes no
  choice, parameter or weight.

Scores follow the peer's definitions: per-date IC (Pearson) and Rank IC (Spearman), their means,
ICIR (mean / std), and a t-statistic of the mean daily Rank IC with Newey-West standard errors
(statsmodels' HAC covariance) over ``horizon - 1`` lags, the overlap of consecutive labels.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import polars as pl
import statsmodels.api as sm

from models.learning.estimators import get_spec
from models.learning.label_transforms import transform_expr
from models.learning.metrics import daily_ic
from models.types import CLOSE, DATE, KEYS, SYMBOL

QLIB_LABEL = "qlib"  # the peer's one-day label: close t+1 -> t+2


@dataclass(frozen=True)
class Periods:
    """The protocol's dates (Qlib's US benchmark split by default).

    ``folds`` > 1 adds rolling validation origins before Qlib's: the same train / valid split
    moved back by the valid block's length, ``folds - 1`` times (with 3: train to 2010, valid
    2011-2012; to 2012, valid 2013-2014; to 2014, valid 2015-2016). Every choice then reads
    the valid blocks of all folds, each predicted by a model trained only before it; the test
    period is still predicted by the last fold's model (trained to ``train_end``, as Qlib's)."""

    train_end: date = date(2014, 12, 31)
    valid_end: date = date(2016, 12, 31)
    test_start: date = date(2017, 1, 1)
    test_end: date = date(2021, 4, 20)
    folds: int = 1

    def __post_init__(self) -> None:
        if not self.train_end < self.valid_end < self.test_start <= self.test_end:
            raise ValueError(f"periods out of order: {self}")
        if self.folds < 1:
            raise ValueError(f"folds must be >= 1, got {self.folds}")

    def fold(self, k: int) -> "Periods":
        """The ``k``-th validation origin, oldest first (``folds - 1`` is this one)."""
        back = self.folds - 1 - k
        if not 0 <= back < self.folds:
            raise ValueError(f"fold {k} of {self.folds}")
        if back == 0:
            return replace(self, folds=1)
        span = self.valid_end - self.train_end
        return replace(
            self,
            train_end=_years_back(self.train_end, span, back),
            valid_end=_years_back(self.valid_end, span, back),
            folds=1,
        )

    def each_fold(self) -> list["Periods"]:
        return [self.fold(k) for k in range(self.folds)]


def _years_back(day: date, span, times: int) -> date:
    """``day`` moved back ``times`` valid spans: by whole years when the span is (so every
    fold ends on a year end), else by days."""
    years = round(span.days / 365.25)
    if years and abs(span.days - years * 365.25) <= 1:
        return day.replace(year=day.year - years * times)
    return day - span * times


def next_close_returns(prices: pl.LazyFrame, horizons: Sequence[int]) -> pl.LazyFrame:
    """``ret_<h>`` = close[t + 1 + h] / close[t + 1] - 1 per symbol for each ``h`` (``ret_1`` is
    Qlib's label) and ``end_<h>``, the date its horizon ends."""
    close = pl.col(CLOSE)
    return prices.sort(KEYS).select(
        SYMBOL,
        DATE,
        *(
            (close.shift(-1 - h) / close.shift(-1) - 1).over(SYMBOL).alias(f"ret_{h}")
            for h in horizons
        ),
        *(pl.col(DATE).shift(-1 - h).over(SYMBOL).alias(f"end_{h}") for h in horizons),
    )


def newey_west_t(values: np.ndarray, lags: int) -> float:
    """t-statistic of the mean of ``values`` with Newey-West (HAC) standard errors over ``lags``
    lags (``lags=0``: the plain heteroskedasticity-robust t)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 3:
        return float("nan")
    fit = sm.OLS(values, np.ones((len(values), 1))).fit(
        cov_type="HAC", cov_kwds={"maxlags": int(lags), "use_correction": True}
    )
    return float(fit.tvalues[0])


def score(
    dates: np.ndarray, pred: np.ndarray, label: np.ndarray, lags: int = 0
) -> dict[str, float]:
    """IC, ICIR, Rank IC, Rank ICIR, the Newey-West t of the mean Rank IC (``lags`` lags), and the
    number of dates and (date, stock) pairs scored (pairs with a prediction and a label)."""
    ok = np.isfinite(pred) & np.isfinite(label)
    d, p, y = dates[ok], pred[ok], label[ok]
    rank = daily_ic(d, p, y)["ic"].to_numpy()
    ic = daily_ic(d, p, y, method="pearson")["ic"].to_numpy()

    def ir(x: np.ndarray) -> float:
        return float(x.mean() / x.std(ddof=1)) if len(x) > 1 and x.std(ddof=1) > 0 else np.nan

    return {
        "ic": float(ic.mean()) if len(ic) else np.nan,
        "icir": ir(ic),
        "rank_ic": float(rank.mean()) if len(rank) else np.nan,
        "rank_icir": ir(rank),
        "t": newey_west_t(rank, lags),
        "n_dates": float(len(rank)),
        "n_pairs": float(ok.sum()),
    }


def ic_decay(
    dates: np.ndarray, pred: np.ndarray, returns: Mapping[int, np.ndarray]
) -> pl.DataFrame:
    """Rank IC of ``pred`` against the ``h``-day return after the next close for every ``h`` in
    ``returns``, with its Newey-West t over ``h - 1`` lags: how long the forecast lasts."""
    rows = []
    for h, ret in sorted(returns.items()):
        s = score(dates, pred, ret, lags=h - 1)
        rows.append({"horizon": h, "rank_ic": s["rank_ic"], "t": s["t"], "ic": s["ic"]})
    return pl.DataFrame(rows)


def centred_rank(dates: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-date percentile rank centred on zero (NaN stays NaN): scale-free inputs for the
    meta-learner and the rank feature transform."""
    frame = pl.DataFrame({"d": dates, "v": values}).with_columns(pl.col("v").fill_nan(None))
    out = frame.select((pl.col("v").rank() / pl.col("v").count() - 0.5).over("d"))
    return out.to_series().fill_null(np.nan).to_numpy()


@dataclass
class ProtocolData:
    """Everything the protocol reads, as arrays over the same rows (any order).

    ``labels`` maps a training-label name to ``(values, label_end)``; ``score_label`` names the
    one every variant is scored (and chosen) on. ``X_rank`` holds the features ranked per date
    (for ``features="rank"`` variants), ``extra`` other inputs by name (``features=<name>``);
    ``sectors`` and ``liquidity`` feed the sector label
    transforms and the liquidity weights."""

    dates: np.ndarray
    X: np.ndarray
    feature_names: list[str]
    labels: dict[str, tuple[np.ndarray, np.ndarray]]
    score_label: str = QLIB_LABEL
    sectors: np.ndarray | None = None
    liquidity: np.ndarray | None = None
    X_rank: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # other inputs by name
    _targets: dict = field(default_factory=dict, repr=False)

    def target(self, label: str, transform: str) -> np.ndarray:
        """The training target: ``label`` under a per-date transform (cached)."""
        key = (label, transform)
        if key not in self._targets:
            values = self.labels[label][0]
            frame = pl.DataFrame(
                {
                    DATE: self.dates,
                    "label": values,
                    "sector": self.sectors
                    if self.sectors is not None
                    else np.repeat("", len(values)),
                }
            ).with_columns(pl.col("label").fill_nan(None))
            out = frame.select(transform_expr(transform)).to_series()
            self._targets[key] = out.fill_null(np.nan).to_numpy().astype(np.float64)
        return self._targets[key]

    def inputs(self, features: str) -> np.ndarray:
        if features == "raw":
            return self.X
        if features in self.extra:  # e.g. raw Alpha360-style windows for the nets
            return self.extra[features]
        if features in ("rank", "both") and self.X_rank is None:
            raise ValueError(f"features={features!r} needs ProtocolData.X_rank")
        if features == "rank":
            return self.X_rank
        if features == "both":  # the raw features and their per-date ranks side by side
            if "both" not in self._targets:
                self._targets["both"] = np.hstack([self.X, self.X_rank])
            return self._targets["both"]
        raise ValueError(
            f"unknown feature transform {features!r}; known: raw, rank, both, {sorted(self.extra)}"
        )


@dataclass(frozen=True)
class Variant:
    """One configuration a quant would try; every field but ``name`` changes the fit."""

    name: str
    model: str = "lightgbm"  # a models.learning.estimators name
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str = QLIB_LABEL  # the training label (a ProtocolData.labels key)
    target: str = "rank"  # a models.learning.label_transforms transform of it
    features: str = "raw"  # raw, rank (each feature ranked per date) or both
    weights: str = "none"  # none, recency (half-life in years: recency_halflife), liquidity
    recency_halflife: float = 3.0
    window_years: float | None = None  # None: expanding from the first date; else rolling
    seeds: int = 1  # models averaged, seeds 0 .. seeds - 1
    early_stopping: int | None = None  # rounds without improvement on the valid target
    tune_trials: int = (
        0  # Optuna trials (models.learning.tuning) on the valid block, 0: params as given
    )
    family: str = ""  # defaults to the model name

    @property
    def kind(self) -> str:
        return self.family or self.model

    def describe(self) -> dict[str, Any]:
        return {
            "variant": self.name,
            "model": self.model,
            "label": self.label,
            "target": self.target,
            "features": self.features,
            "weights": self.weights,
            "window": "expanding" if self.window_years is None else f"{self.window_years:g}y",
            "seeds": self.seeds,
            "tune_trials": self.tune_trials,
        }


@dataclass
class Trial:
    """A variant fitted on the training rows: its valid score (what choices read), the chosen
    parameters, and its predictions for the valid and the test rows."""

    variant: Variant
    params: dict[str, Any]
    valid_score: dict[str, float]
    valid_pred: np.ndarray  # over valid_rows(data, periods): every fold's valid block
    test_pred: np.ndarray  # over ProtocolRows.test
    n_trials: int  # fits this trial's choices cost (Optuna trials, or 1)
    fit_seconds: float = 0.0


@dataclass(frozen=True)
class ProtocolRows:
    """Row positions of the protocol's blocks for one training label."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def rows_for(
    data: ProtocolData, label: str, periods: Periods, window_years: float | None
) -> ProtocolRows:
    """Training rows (the label ends by ``train_end``; within the rolling window if any), valid
    rows (dated after ``train_end``, the scoring label ending by ``valid_end``) and test rows
    (dated inside the test period)."""
    d = data.dates.astype("datetime64[D]")
    end = data.labels[label][1].astype("datetime64[D]")
    train_end, valid_end = np.datetime64(periods.train_end), np.datetime64(periods.valid_end)
    train = np.isfinite(data.labels[label][0]) & (end <= train_end)
    if window_years is not None:
        train &= d > train_end - np.timedelta64(int(round(window_years * 365.25)), "D")
    score_values, score_end = data.labels[data.score_label]
    valid = (d > train_end) & (score_end.astype("datetime64[D]") <= valid_end)
    test = (d >= np.datetime64(periods.test_start)) & (d <= np.datetime64(periods.test_end))
    return ProtocolRows(np.flatnonzero(train), np.flatnonzero(valid), np.flatnonzero(test))


def valid_rows(data: ProtocolData, periods: Periods) -> np.ndarray:
    """The valid rows of every fold, oldest fold first (the blocks share no date): the rows
    every choice reads."""
    return np.concatenate(
        [rows_for(data, data.score_label, fold, None).valid for fold in periods.each_fold()]
    )


def paired_t(dates: np.ndarray, a: np.ndarray, b: np.ndarray, label: np.ndarray) -> float:
    """t-statistic of the mean daily difference between the Rank ICs of predictions ``a`` and
    ``b`` on the same rows: whether ``a`` beats ``b`` by more than the day-to-day noise (the two
    read the same days, so their noise is shared and the difference is what is tested)."""
    ic_a = daily_ic(dates, a, label).rename({"ic": "a"})
    ic_b = daily_ic(dates, b, label).rename({"ic": "b"})
    both = ic_a.join(ic_b, on="date", how="inner")
    return newey_west_t((both["a"] - both["b"]).to_numpy(), 0)


def wins(
    gain: float, dates: np.ndarray, a: np.ndarray, b: np.ndarray, label: np.ndarray, min_t: float
) -> bool:
    """Whether predictions ``a`` beat ``b``: a positive ``gain`` in mean Rank IC and, with
    ``min_t`` > 0, a :func:`paired_t` of at least ``min_t`` (a NaN t does not win)."""
    if not gain > 0:
        return False
    return min_t <= 0 or paired_t(dates, a, b, label) >= min_t


def sample_weights(
    data: ProtocolData, variant: Variant, rows: np.ndarray, periods: Periods
) -> np.ndarray | None:
    """``recency``: halves every ``recency_halflife`` years before ``train_end``; ``liquidity``:
    the row's per-date percentile of ``ProtocolData.liquidity`` (the most traded names weigh
    most); both scaled to mean 1 over the training rows."""
    if variant.weights == "none":
        return None
    if variant.weights == "recency":
        age = (np.datetime64(periods.train_end) - data.dates[rows].astype("datetime64[D]")).astype(
            float
        )
        w = 0.5 ** (age / (365.25 * variant.recency_halflife))
    elif variant.weights == "liquidity":
        if data.liquidity is None:
            raise ValueError("weights='liquidity' needs ProtocolData.liquidity")
        pct = centred_rank(data.dates[rows], data.liquidity[rows]) + 0.5
        w = np.nan_to_num(pct, nan=0.5)
    else:
        raise ValueError(f"unknown weights {variant.weights!r}; known: none, recency, liquidity")
    # mean 1: the trees' hessian sums (and so what L1/L2 and min_child_weight mean) stay as
    # unweighted; Qlib's L1 of 205 grew no tree on raw recency weights
    return w / w.mean()


def _fit_kwargs(model, weights, X_valid, y_valid, rounds: int | None) -> dict[str, Any]:
    """Keyword arguments of ``fit`` for weights and early stopping on the valid target."""
    kwargs: dict[str, Any] = {}
    if weights is not None:
        steps = getattr(model, "steps", None)  # a scikit-learn pipeline: its last step weighs
        kwargs[f"{steps[-1][0]}__sample_weight" if steps else "sample_weight"] = weights
    if rounds is None:
        return kwargs
    name = type(model).__name__
    if name.startswith("LGBM"):
        import lightgbm

        kwargs |= {
            "eval_set": [(X_valid, y_valid)],
            "callbacks": [lightgbm.early_stopping(rounds, verbose=False)],
        }
    elif name.startswith("XGB"):
        model.set_params(early_stopping_rounds=rounds)
        kwargs |= {"eval_set": [(X_valid, y_valid)], "verbose": False}
    else:
        raise ValueError(f"early stopping is for LightGBM and XGBoost, not {name}")
    return kwargs


def _tune(
    data: ProtocolData,
    variant: Variant,
    folds: Sequence[ProtocolRows],
    y: np.ndarray,
    n_jobs: int,
) -> tuple[dict, int]:
    """Optuna (the pipeline's tuner) on the folds: fit on each fold's training rows, score its
    valid block's Rank IC against the scoring label; the mean over folds is the objective."""
    import optuna

    from models.learning.tuning import TuningProblem, best_params, tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    X = data.inputs(variant.features)
    keep = np.unique(np.concatenate([np.concatenate([f.train, f.valid]) for f in folds]))
    splits = [(np.searchsorted(keep, f.train), np.searchsorted(keep, f.valid)) for f in folds]
    score_label = data.labels[data.score_label][0]
    problem = TuningProblem(
        variant.model,
        X[keep],
        np.where(np.isfinite(y[keep]), y[keep], 0.0),
        data.dates[keep],
        score_label[keep],
        splits,
        0,
        n_jobs,
    )
    study = tune(
        problem, n_trials=variant.tune_trials, storage=None, study_name=f"protocol-{variant.name}"
    )
    return {**variant.params, **best_params(study)}, len(study.trials)


def _fit_fold(
    data: ProtocolData,
    variant: Variant,
    params: dict[str, Any],
    periods: Periods,
    rows: ProtocolRows,
    n_jobs: int,
    test: bool,
) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    """One fold: fit on its training rows (early stopping on its valid block), predict its
    valid rows and, when ``test``, the test rows; returns the boosters' best iterations too."""
    y = data.target(variant.label, variant.target)
    X = data.inputs(variant.features)
    spec = get_spec(variant.model)
    train = rows.train[np.isfinite(y[rows.train])]
    # early stopping reads the valid block's training target (never the test period's)
    valid_label_ok = data.labels[variant.label][1][rows.valid].astype(
        "datetime64[D]"
    ) <= np.datetime64(periods.valid_end)
    stop_rows = rows.valid[valid_label_ok & np.isfinite(y[rows.valid])]
    weights = sample_weights(data, variant, train, periods)
    valid_pred = np.zeros(len(rows.valid))
    test_pred = np.zeros(len(rows.test)) if test else None
    best_iterations = []
    for seed in range(variant.seeds):
        model = spec.build(params, seed, n_jobs)
        kwargs = _fit_kwargs(model, weights, X[stop_rows], y[stop_rows], variant.early_stopping)
        model.fit(X[train], y[train], **kwargs)
        valid_pred += model.predict(X[rows.valid]) / variant.seeds
        if test:
            test_pred += model.predict(X[rows.test]) / variant.seeds
        best = getattr(model, "best_iteration_", None) or getattr(model, "best_iteration", None)
        if variant.early_stopping and best:
            best_iterations.append(int(best))
    return valid_pred, test_pred, best_iterations


def run_variant(data: ProtocolData, variant: Variant, periods: Periods, n_jobs: int = 2) -> Trial:
    """Fit ``variant`` on each fold's training rows (after Optuna on the folds when it tunes),
    predict each fold's valid rows and, with the last fold's model, the test rows; score the
    pooled valid rows against the scoring label."""
    import time

    started = time.perf_counter()
    folds = periods.each_fold()
    fold_rows = [rows_for(data, variant.label, f, variant.window_years) for f in folds]
    y = data.target(variant.label, variant.target)
    params, n_trials = dict(variant.params), 1
    if variant.tune_trials:
        params, n_trials = _tune(data, variant, fold_rows, y, n_jobs)
    valid_preds, test_pred = [], None
    for k, (fold, rows) in enumerate(zip(folds, fold_rows, strict=True)):
        last = k == len(folds) - 1
        pred, test, best = _fit_fold(data, variant, params, fold, rows, n_jobs, test=last)
        valid_preds.append(pred)
        if last:
            test_pred = test
            if best:  # the iterations of the models that predict the test period
                params["best_iterations"] = best
    valid = np.concatenate([r.valid for r in fold_rows])
    valid_pred = np.concatenate(valid_preds)
    label = data.labels[data.score_label][0]
    valid_score = score(data.dates[valid], valid_pred, label[valid])
    return Trial(
        variant, params, valid_score, valid_pred, test_pred, n_trials, time.perf_counter() - started
    )


META_LEARNERS = ("best", "mean", "positive_linear", "ridge")


def _meta_weights(kind: str, P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights over the columns of ``P`` (each a base model's per-date ranked predictions)."""
    n = P.shape[1]
    if kind == "mean":
        return np.full(n, 1.0 / n)
    if kind == "best":
        scores = [np.corrcoef(P[:, j], y)[0, 1] for j in range(n)]
        return np.eye(n)[int(np.nanargmax(scores))]
    from sklearn.linear_model import LinearRegression, Ridge

    model = (
        LinearRegression(positive=True)
        if kind == "positive_linear"
        else Ridge(alpha=1.0, positive=True)
    )
    coef = model.fit(P, y).coef_
    return coef / coef.sum() if coef.sum() > 0 else np.full(n, 1.0 / n)


@dataclass
class Ensemble:
    members: list[str]  # variant names
    meta: str  # the chosen meta-learner
    weights: dict[str, float]
    meta_scores: dict[str, float]  # each meta-learner's Rank IC on the second half of valid
    valid_pred: np.ndarray
    test_pred: np.ndarray


def stack(
    data: ProtocolData, trials: Sequence[Trial], periods: Periods, min_t: float = 0.0
) -> Ensemble:
    """Combine the members' ranked predictions. The meta-learner is chosen walk-forward inside
    the valid rows: fitted on the earlier folds' valid blocks and scored on the last one (with
    one fold: on its first half of dates and scored on the second), so out-of-fold for the base
    models and out of sample for the meta-learner; then refitted on all valid rows. A learner
    other than the plain mean is chosen only if it beats the mean there with a paired t of at
    least ``min_t`` (0: whichever scores highest)."""
    rows = valid_rows(data, periods)
    d = data.dates[rows]
    label = data.labels[data.score_label][0][rows]
    P = np.column_stack([centred_rank(d, t.valid_pred) for t in trials])
    y = centred_rank(d, label)
    ok = np.isfinite(y) & np.isfinite(P).all(axis=1)
    if periods.folds > 1:
        split = np.datetime64(periods.train_end)  # the last fold's valid block starts after it
        first, second = ok & (d <= split), ok & (d > split)
    else:
        halfway = np.sort(np.unique(d))[len(np.unique(d)) // 2]
        first, second = ok & (d < halfway), ok & (d >= halfway)
    meta_scores, meta_preds = {}, {}
    for kind in META_LEARNERS:
        w = _meta_weights(kind, P[first], y[first])
        meta_preds[kind] = P[second] @ w
        meta_scores[kind] = score(d[second], meta_preds[kind], label[second])["rank_ic"]
    chosen = max(META_LEARNERS, key=lambda k: (meta_scores[k], -META_LEARNERS.index(k)))
    gain = meta_scores[chosen] - meta_scores["mean"]
    if min_t > 0 and chosen != "mean":  # with 0, the highest score stands (ties: the earlier)
        args = (d[second], meta_preds[chosen], meta_preds["mean"], label[second], min_t)
        chosen = chosen if wins(gain, *args) else "mean"
    w = _meta_weights(chosen, P[ok], y[ok])
    test_d = data.dates[rows_for(data, data.score_label, periods, None).test]
    T = np.column_stack([centred_rank(test_d, t.test_pred) for t in trials])
    names = [t.variant.name for t in trials]
    return Ensemble(
        names,
        chosen,
        dict(zip(names, w.tolist(), strict=True)),
        meta_scores,
        np.nan_to_num(P) @ w,
        np.nan_to_num(T) @ w,
    )


def best_of(trials: Sequence[Trial]) -> Trial:
    """The trial with the highest valid Rank IC (ties: the earliest)."""
    return max(
        trials,
        key=lambda t: (np.nan_to_num(t.valid_score["rank_ic"], nan=-np.inf), -trials.index(t)),
    )


@dataclass
class ProtocolResult:
    trials: list[Trial]
    data_variant: Variant  # the data settings chosen on the first family
    members: list[Trial]  # the best trial of each family
    ensemble: Ensemble
    periods: Periods
    prior_trials: int = 0  # trials of an earlier search whose choices this result replays

    @property
    def n_trials(self) -> int:
        """Every fit whose outcome could have changed a choice."""
        return self.prior_trials + sum(t.n_trials for t in self.trials)

    def chosen_variants(self) -> list[Variant]:
        """The members as fixed configurations (Optuna's choice in ``params``, no tuning left):
        what :func:`replay` refits on other data."""
        out = []
        for t in self.members:
            params = {k: v for k, v in t.params.items() if k != "best_iterations"}
            out.append(replace(t.variant, params=params, tune_trials=0))
        return out

    def choices(self) -> dict[str, Any]:
        """Everything chosen: for the check that no choice reads the test period."""
        return {
            "data_variant": self.data_variant,
            "members": [t.variant.name for t in self.members],
            "params": {t.variant.name: t.params for t in self.members},
            "meta": self.ensemble.meta,
            "weights": self.ensemble.weights,
        }


def search(
    data: ProtocolData,
    base: Variant,
    options: Mapping[str, Sequence[Any]],
    families: Sequence[Variant],
    periods: Periods = Periods(),
    n_jobs: int = 2,
    log=print,
    min_t: float = 0.0,
) -> ProtocolResult:
    """The whole protocol.

    1. ``base`` and every one-at-a-time change of it in ``options`` (field -> values, e.g.
       ``{"target": ["sector_rank"], "weights": ["recency"]}``); each change that beats the base
       on valid is kept, and the combination of all kept changes is tried too; the best of these
       is the data setting. "Beats" means by a paired t (:func:`paired_t`, on the valid rows'
       daily Rank ICs) of at least ``min_t``: with 0 any gain counts; with 1 a change must beat
       the base by a standard error of the day-to-day difference, so that noise on a short
       valid block does not pick the data settings every later family inherits.
    2. Each of ``families`` (other models, tuned or seeded versions) with the chosen data settings
       (the fields it sets itself win).
    3. The best trial of each model family (any trial but the family's first only if it beats
       that one by the same paired t), stacked by :func:`stack` (with the same ``min_t``
       against the plain mean).
    """
    trials: list[Trial] = []
    rows = valid_rows(data, periods)
    valid_dates, valid_label = data.dates[rows], data.labels[data.score_label][0][rows]

    def run(variant: Variant) -> Trial:
        trial = run_variant(data, variant, periods, n_jobs)
        trials.append(trial)
        s = trial.valid_score
        log(
            f"trial {len(trials)} {variant.name}: valid Rank IC {s['rank_ic']:+.4f} "
            f"(t {s['t']:.2f}), {trial.fit_seconds:.0f} s"
        )
        return trial

    first = run(base)

    def beats(trial: Trial, reference: Trial) -> bool:
        gain = trial.valid_score["rank_ic"] - reference.valid_score["rank_ic"]
        return wins(gain, valid_dates, trial.valid_pred, reference.valid_pred, valid_label, min_t)

    def beats_base(trial: Trial) -> bool:
        return beats(trial, first)

    kept: dict[str, Any] = {}
    stage1 = [first]
    for key, values in options.items():
        for value in values:
            trial = run(replace(base, name=f"{base.name}+{key}={value}", **{key: value}))
            stage1.append(trial)
            if beats_base(trial) and (
                key not in kept or trial.valid_score["rank_ic"] > kept[key][1]
            ):
                kept[key] = (value, trial.valid_score["rank_ic"])
    if len(kept) > 1:
        combined = {k: v for k, (v, _) in kept.items()}
        stage1.append(
            run(
                replace(
                    base,
                    name=f"{base.name}+" + "+".join(f"{k}={v}" for k, v in combined.items()),
                    **combined,
                )
            )
        )
    chosen = best_of([first, *(t for t in stage1[1:] if beats_base(t))])
    data_variant = chosen.variant
    settings = {
        k: getattr(data_variant, k)
        for k in ("label", "target", "features", "weights", "window_years", "recency_halflife")
    }
    for family in families:
        own = {
            k: getattr(family, k)
            for k in settings
            if getattr(family, k) != getattr(Variant("_"), k)
        }
        run(replace(family, **(settings | own)))
    by_family: dict[str, list[Trial]] = {}
    for t in trials:
        by_family.setdefault(t.variant.kind, []).append(t)
    # each family's member: its first trial (the base, for the base's family) unless another
    # beats it by the same paired t (a seeded or tuned variant, a data change)
    members = [
        best_of([ts[0], *(t for t in ts[1:] if beats(t, ts[0]))]) for ts in by_family.values()
    ]
    ensemble = stack(data, members, periods, min_t)
    return ProtocolResult(trials, data_variant, members, ensemble, periods)


def holdout_scores(
    data: ProtocolData, result: ProtocolResult, labels: Mapping[str, tuple[str, int]]
) -> pl.DataFrame:
    """Every trial and the ensemble scored once on the test period against each of ``labels``
    (column prefix -> (ProtocolData.labels name, horizon in days): the t-statistic's Newey-West
    lags are ``horizon - 1``), on the same test rows for all."""
    rows = rows_for(data, data.score_label, result.periods, None).test
    d = data.dates[rows]
    preds = {t.variant.name: t.test_pred for t in result.trials}
    preds["ensemble"] = result.ensemble.test_pred
    out = []
    for name, pred in preds.items():
        row: dict[str, Any] = {"model": name}
        for prefix, (label, horizon) in labels.items():
            s = score(d, pred, data.labels[label][0][rows], lags=horizon - 1)
            row |= {f"{prefix}_{k}": v for k, v in s.items()}
        out.append(row)
    return pl.DataFrame(out)


def replay(
    data: ProtocolData,
    members: Sequence[Variant],
    periods: Periods = Periods(),
    prior_trials: int = 0,
    n_jobs: int = 2,
    log=print,
    min_t: float = 0.0,
) -> ProtocolResult:
    """Refit the members an earlier :func:`search` chose (on a subset of names, say) on ``data``,
    and choose their meta-learner and weights again on this data's valid block."""
    trials = []
    for variant in members:
        trial = run_variant(data, variant, periods, n_jobs)
        trials.append(trial)
        log(f"member {variant.name}: valid Rank IC {trial.valid_score['rank_ic']:+.4f}")
    ensemble = stack(data, trials, periods, min_t)
    return ProtocolResult(trials, members[0], trials, ensemble, periods, prior_trials)
