"""Prediction quality measured the way a cross-sectional strategy uses it."""

import numpy as np
import polars as pl


def daily_ic(
    dates: np.ndarray, pred: np.ndarray, label: np.ndarray, method: str = "spearman"
) -> pl.DataFrame:
    """Per-date correlation between predictions and realised labels (``ic`` column).

    ``method="spearman"`` gives the Rank IC, ``"pearson"`` the IC. Dates with fewer than three
    symbols or a constant prediction give null and are dropped.
    """
    frame = pl.DataFrame({"date": dates, "pred": pred, "label": label})
    return (
        frame.group_by("date")
        .agg(pl.corr("pred", "label", method=method).alias("ic"), pl.len().alias("n"))
        .filter((pl.col("n") >= 3) & pl.col("ic").is_finite())
        .sort("date")
        .drop("n")
    )


def mean_rank_ic(dates: np.ndarray, pred: np.ndarray, label: np.ndarray) -> float:
    """Average per-date Rank IC (0.0 if no date can be scored)."""
    ic = daily_ic(dates, pred, label)["ic"]
    return float(ic.mean()) if len(ic) else 0.0


def long_short(
    dates: np.ndarray, pred: np.ndarray, label: np.ndarray, quantile: float = 0.2
) -> pl.DataFrame:
    """Per-date return of the long-short book the predictions imply: the mean label of the top
    ``quantile`` of symbols by prediction minus that of the bottom ``quantile`` (column ``ls``).
    Dates with fewer than five symbols are dropped."""
    frame = pl.DataFrame({"date": dates, "pred": pred, "label": label})
    pct = (pl.col("pred").rank("ordinal") / pl.len()).over("date")
    return (
        frame.with_columns(pct=pct, n=pl.len().over("date"))
        .filter(pl.col("n") >= 5)
        .group_by("date")
        .agg(
            (
                pl.col("label").filter(pl.col("pct") > 1 - quantile).mean()
                - pl.col("label").filter(pl.col("pct") <= quantile).mean()
            ).alias("ls")
        )
        .drop_nulls()
        .sort("date")
    )


def ic_summary(dates: np.ndarray, pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """IC, Rank IC, ICIR (mean / std of daily Rank IC), directional hit rate and the mean
    per-date long-short (top minus bottom quintile) label of the predictions."""
    rank_ic = daily_ic(dates, pred, label)["ic"].to_numpy()
    ls = long_short(dates, pred, label)["ls"].to_numpy()
    ic = daily_ic(dates, pred, label, method="pearson")["ic"].to_numpy()
    std = rank_ic.std(ddof=1) if len(rank_ic) > 1 else np.nan
    return {
        "ic": float(np.mean(ic)) if len(ic) else np.nan,
        "rank_ic": float(np.mean(rank_ic)) if len(rank_ic) else np.nan,
        "rank_icir": float(np.mean(rank_ic) / std) if std and np.isfinite(std) else np.nan,
        "hit_rate": float(np.mean(np.sign(pred) == np.sign(label))),
        "long_short": float(np.mean(ls)) if len(ls) else np.nan,
        "n_dates": float(len(rank_ic)),
    }


def rank_ic_tstat(dates: np.ndarray, pred: np.ndarray, label: np.ndarray, lags: int) -> float:
    """t-statistic of the mean daily Rank IC, with a Newey-West (HAC) standard error over
    ``lags`` days: labels that span several days overlap, so neighbouring days' ICs are
    correlated and the plain mean / (std / sqrt(n)) would overstate the evidence. NaN with
    fewer than three scored days."""
    import statsmodels.api as sm

    ic = daily_ic(dates, pred, label)["ic"].to_numpy()
    if len(ic) < 3 or np.ptp(ic) == 0:
        return float("nan")
    fit = sm.OLS(ic, np.ones(len(ic))).fit(cov_type="HAC", cov_kwds={"maxlags": max(0, lags)})
    return float(fit.tvalues[0])


def label_horizon(dates: np.ndarray, label_end: np.ndarray) -> int:
    """The labels' median span in trading (business) days, at least 1."""
    days = np.busday_count(dates.astype("datetime64[D]"), label_end.astype("datetime64[D]"))
    return max(1, int(np.median(days))) if len(days) else 1
