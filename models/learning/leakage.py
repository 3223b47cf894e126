"""Leakage checks: evidence, from the data alone, that no label reached the training inputs.

Two ways look-ahead gets into a backtest, and a check for each:

* **splits without purge**: a training row whose label's horizon ends on or after the first
  date of the fold it predicts. Every out-of-fold row carries its fold's last training label
  end (``train_label_end``), so this is a comparison per fold.
* **labels in the features**: a feature that is (a shift of) the label. Real daily equity
  features have a mean per-date Rank IC with the forward return well under 0.1 in absolute
  value; a leaked one is near 1. A feature above ``max_feature_ic`` is named.

And plausibility bounds: an out-of-sample mean Rank IC above ``max_oos_ic``, or a strategy's net
Sharpe ratio above ``max_sharpe``, is reported as a suspected leak rather than celebrated.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from models.types import DATE, KEYS

MAX_FEATURE_IC = 0.3
MAX_OOS_IC = 0.2
MAX_STRATEGY_SHARPE = 3.0


@dataclass(frozen=True)
class Leak:
    kind: str  # "unpurged_split" | "label_in_features" | "implausible_oos" | "implausible_backtest"
    where: str
    detail: str


def split_leaks(oof: pl.DataFrame) -> list[Leak]:
    """Folds whose training labels end on or after the fold's first predicted date."""
    folds = (
        oof.group_by("fold")
        .agg(pl.col(DATE).min().alias("first"), pl.col("train_label_end").max().alias("seen"))
        .filter(pl.col("seen") >= pl.col("first"))
        .sort("fold")
    )
    return [
        Leak(
            "unpurged_split",
            f"fold {r['fold']}",
            f"a training label ends {r['seen']}, on or after the fold's first date {r['first']}",
        )
        for r in folds.iter_rows(named=True)
    ]


def feature_label_ic(
    features: pl.DataFrame | pl.LazyFrame,
    labels: pl.DataFrame,
    names: Sequence[str],
    max_dates: int = 400,
) -> pl.DataFrame:
    """``[feature, mean_rank_ic]``: each feature's mean per-date Rank IC with the label, on up
    to ``max_dates`` evenly spaced dates."""
    # the dates first, then the join: only the sampled rows are ever read or copied
    lazy = features.lazy()
    dates = lazy.select(KEYS).join(labels.lazy().select(KEYS), on=KEYS).collect()[DATE]
    dates = dates.unique().sort()
    chosen = pl.col(DATE).is_in(dates.gather_every(max(len(dates) // max_dates, 1)).implode())
    frame = (
        lazy.filter(chosen)
        .select(*KEYS, *names)
        .join(labels.lazy().filter(chosen).select(*KEYS, "label"), on=KEYS)
        .collect()
    )
    per_date = frame.group_by(DATE).agg(
        pl.corr(n, "label", method="spearman").alias(n) for n in names
    )
    means = per_date.select(pl.col(n).fill_nan(None).mean() for n in names).row(0)
    return pl.DataFrame(
        {"feature": list(names), "mean_rank_ic": [np.nan if m is None else m for m in means]}
    )


def feature_leaks(ic: pl.DataFrame, max_feature_ic: float = MAX_FEATURE_IC) -> list[Leak]:
    # constant-per-date features (market series) have no Rank IC: null, never a suspect
    suspects = ic.filter(pl.col("mean_rank_ic").fill_nan(None).abs() > max_feature_ic)
    return [
        Leak(
            "label_in_features",
            r["feature"],
            f"mean Rank IC with the label {r['mean_rank_ic']:+.3f} (|IC| > {max_feature_ic}): "
            "the feature is, or is computed from, the label",
        )
        for r in suspects.iter_rows(named=True)
    ]


def oos_leaks(summary: pl.DataFrame, max_oos_ic: float = MAX_OOS_IC) -> list[Leak]:
    """Models whose out-of-sample mean Rank IC is too good to be true."""
    return [
        Leak(
            "implausible_oos",
            r["model"],
            f"out-of-sample mean Rank IC {r['rank_ic']:+.3f} > {max_oos_ic}: suspect a leak",
        )
        for r in summary.iter_rows(named=True)
        if np.isfinite(r["rank_ic"]) and r["rank_ic"] > max_oos_ic
    ]


def strategy_leaks(table: pl.DataFrame, max_sharpe: float = MAX_STRATEGY_SHARPE) -> list[Leak]:
    """Strategies whose net annualised Sharpe ratio is above ``max_sharpe``: daily equity books
    that good after costs, out of sample, have almost always seen the future."""
    return [
        Leak(
            "implausible_backtest",
            r["strategy"],
            f"net Sharpe {r['sharpe']:.2f} > {max_sharpe} out of sample: suspect look-ahead "
            "(signals dated after the returns they trade)",
        )
        for r in table.iter_rows(named=True)
        if np.isfinite(r["sharpe"]) and r["sharpe"] > max_sharpe
    ]
