"""The stacked ensemble's final fit and the champion/challenger rule: the meta-learner fitted on
out-of-fold predictions dated before the final test period and scored on it; a challenger is
promoted only when its test Rank IC is significantly above zero and beats the champion's on the
same period by a margin."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
from sklearn.linear_model import LinearRegression, Ridge

from models.learning.dataset import assemble
from models.learning.metrics import ic_summary, label_horizon, mean_rank_ic, rank_ic_tstat
from models.learning.stacking import StackedEnsemble, walk_forward_meta
from models.learning.training import BaseModels


def _small_lightgbm():
    from lightgbm import LGBMRegressor

    return LGBMRegressor(
        n_estimators=100,
        num_leaves=7,
        learning_rate=0.05,
        min_child_samples=200,
        verbose=-1,
        random_state=0,
        n_jobs=1,
    )


META_LEARNERS = {
    "positive_linear": lambda: LinearRegression(positive=True),
    "ridge": lambda: Ridge(alpha=1.0, positive=True),
    "lightgbm": _small_lightgbm,
}


def ic_summaries(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """:func:`ic_summary` of each prediction column of ``frame`` (``[date, label, pred_*]``)
    against its label, one row per model."""
    d, y = frame["date"].to_numpy(), frame["label"].to_numpy()
    return pl.DataFrame(
        [
            {"model": c.removeprefix("pred_"), **ic_summary(d, frame[c].to_numpy(), y)}
            for c in columns
        ]
    )


@dataclass
class FinalEnsemble:
    """The ensemble as it is registered, with what it is judged by."""

    ensemble: StackedEnsemble
    weights: dict[str, float]  # the meta-learner's coefficient per base model, where linear
    same_dates: pl.DataFrame  # walk-forward on the OOF folds: every model on the same rows
    test_metrics: dict[str, float]  # on the final test period, with the Rank IC's t-statistic
    test_rank_ic: float  # the mean daily Rank IC the gate compares
    train_label_end: str  # the last label the base models saw
    example: pd.DataFrame  # five served input rows, for the signature
    ds: object  # the assembled dataset (``models.learning.dataset``), for scoring a champion
    last_date: object


def final_ensemble(
    oof_predictions: pl.DataFrame,
    base: BaseModels,
    feature_matrix: pl.DataFrame,
    labels: pl.DataFrame,
    meta_learner: str,
) -> FinalEnsemble:
    """The meta-learner ``meta_learner`` (of :data:`META_LEARNERS`) fitted only on out-of-fold
    predictions whose labels end before the final test period, over the base models fitted
    before it, and scored by the very model being registered on that period."""
    pred_cols = [f"pred_{m}" for m in base.params]
    test_start = base.test_start
    before = oof_predictions.filter(pl.col("label_end") < test_start)
    meta = META_LEARNERS[meta_learner]
    ensemble = StackedEnsemble(base.fitted, meta(), base.input_columns()).fit(
        before.select(pred_cols).to_numpy(), before["target"].to_numpy()
    )
    ensemble.features_, ensemble.window_ = list(base.feature_names), base.window
    coef = getattr(ensemble.final_estimator_, "coef_", None)
    weights = dict(zip(base.params, coef.tolist(), strict=True)) if coef is not None else {}
    history = walk_forward_meta(oof_predictions, pred_cols, meta(), "target")
    ds = assemble(feature_matrix, labels, base.target)
    test = ds.dates >= np.datetime64(test_start)
    # the final test period's rows only (the ensemble's input as it is served: float64)
    X_test = base.dataset_inputs(ds, np.flatnonzero(test)).astype(np.float64)
    pred = ensemble.predict(X_test)
    metrics = ic_summary(ds.dates[test], pred, ds.label[test])
    horizon = label_horizon(ds.dates, ds.label_end)
    metrics["rank_ic_t"] = rank_ic_tstat(ds.dates[test], pred, ds.label[test], horizon)
    return FinalEnsemble(
        ensemble,
        weights,
        ic_summaries(history, [*pred_cols, "ensemble"]),
        metrics,
        mean_rank_ic(ds.dates[test], pred, ds.label[test]),
        str(ds.label_end[~test & (ds.label_end < np.datetime64(test_start))].max()),
        pl.DataFrame(X_test[-5:], schema=base.input_names, orient="row").to_pandas(),
        ds,
        ds.frame["date"].max(),
    )


def version_description(
    fit: FinalEnsemble, base: BaseModels, meta_learner: str, symbols: int, run_id: str
) -> str:
    """What a registered version was trained on and how it tested."""
    m = fit.test_metrics
    return (
        f"{meta_learner} meta-learner over {', '.join(base.params)} "
        f"({len(base.feature_names)} features of {symbols} symbols, "
        f"{fit.ds.frame['date'].min()} to {fit.last_date}). Base models fitted on "
        f"labels ending by {fit.train_label_end}, the meta-learner on their out-of-fold "
        f"predictions before {base.test_start}. Final test period {base.test_start} to "
        f"{fit.last_date}: Rank IC {m['rank_ic']:+.4f} "
        f"(t {m['rank_ic_t']:.2f}, {int(m['n_dates'])} days). "
        f"Dagster run {run_id}."
    )


def champion_test_rank_ic(model, features: pl.DataFrame, ds, test_start) -> float | None:
    """Mean daily Rank IC of a registered ensemble on the final test period, or None when its
    inputs are not in today's feature matrix."""
    names, window = list(getattr(model, "features_", [])), int(getattr(model, "window_", 1))
    if not names or not set(names) <= set(features.columns):
        return None
    test = ds.dates >= np.datetime64(test_start)
    X = ds.inputs(names, window, rows=np.flatnonzero(test)).astype(np.float64)
    return mean_rank_ic(ds.dates[test], model.predict(X), ds.label[test])


def weak_evidence(rank_ic: float, t: float, floor: float, min_t: float) -> str | None:
    """Why a challenger's test Rank IC does not earn promotion, or None when it is above the
    ``floor`` with a t-statistic above ``min_t``."""
    if not (np.isfinite(rank_ic) and rank_ic > floor):
        return f"test Rank IC {rank_ic:+.4f} is not above the floor {floor:+.4f}"
    if not (np.isfinite(t) and t > min_t):
        return (
            f"test Rank IC {rank_ic:+.4f} is not significantly above zero "
            f"(t {t:.2f}, needs more than {min_t:.2f})"
        )
    return None


def promotion_decision(
    version: str,
    challenger_ic: float,
    t: float,
    champion,
    test_start,
    *,
    min_test_rank_ic: float,
    min_test_rank_ic_t: float,
    margin: float,
    score_champion: Callable[[], tuple[float | None, str | None]],
) -> dict:
    """The evidence and the decision on the challenger ``version``: refused when its test Rank
    IC is not significantly above zero (champion or not); else compared with ``champion`` (the
    registered version holding the alias, ``.version`` and ``.tags``; None) on the same final
    test period and promoted when it wins by ``margin`` (or when there is no champion).
    ``score_champion`` loads and scores the champion only when the comparison needs it:
    ``(its test Rank IC or None when its features are gone, why it was refused or None)``."""
    evidence = {
        "challenger_version": version,
        "challenger_test_rank_ic": challenger_ic,
        "challenger_test_rank_ic_t": t,
        "min_test_rank_ic": min_test_rank_ic,
        "min_test_rank_ic_t": min_test_rank_ic_t,
        "test_start": str(test_start),
        "margin": margin,
    }
    weak = weak_evidence(challenger_ic, t, min_test_rank_ic, min_test_rank_ic_t)
    if weak:
        decision = "refused"
        reason = weak + (
            f"; @champion stays version {champion.version}" if champion else "; no @champion"
        )
    elif champion is None:
        decision = "promoted"
        reason = "no champion yet, and the test Rank IC clears the floor and the t-statistic bar"
    elif champion.version == str(version):
        decision, reason = "already champion", f"version {version}"
    elif champion.tags.get("train_label_end", "9999") >= str(test_start):
        decision = "kept champion"
        reason = (
            f"champion v{champion.version} was fitted on labels to "
            f"{champion.tags.get('train_label_end')}, inside this test period (from {test_start}): "
            "no honest comparison, so no promotion"
        )
    else:
        champion_ic, refused = score_champion()
        evidence.update(champion_version=champion.version, champion_test_rank_ic=champion_ic)
        if refused is not None:  # an artifact that cannot be trusted is not a champion to keep
            decision, reason = "promoted", f"the champion could not be loaded safely: {refused}"
        elif champion_ic is None:
            decision, reason = "kept champion", "the champion's features are not in today's matrix"
        elif challenger_ic >= champion_ic + margin:
            decision = "promoted"
            reason = f"Rank IC {challenger_ic:+.4f} >= champion's {champion_ic:+.4f} + {margin}"
        else:
            decision = "kept champion"
            reason = f"Rank IC {challenger_ic:+.4f} < champion's {champion_ic:+.4f} + {margin}"
    evidence.update(decision=decision, reason=reason)
    return evidence
