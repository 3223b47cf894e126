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


def ic_summary(dates: np.ndarray, pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """IC, Rank IC, ICIR (mean / std of daily Rank IC) and directional hit rate."""
    rank_ic = daily_ic(dates, pred, label)["ic"].to_numpy()
    ic = daily_ic(dates, pred, label, method="pearson")["ic"].to_numpy()
    std = rank_ic.std(ddof=1) if len(rank_ic) > 1 else np.nan
    return {
        "ic": float(np.mean(ic)) if len(ic) else np.nan,
        "rank_ic": float(np.mean(rank_ic)) if len(rank_ic) else np.nan,
        "rank_icir": float(np.mean(rank_ic) / std) if std and np.isfinite(std) else np.nan,
        "hit_rate": float(np.mean(np.sign(pred) == np.sign(label))),
        "n_dates": float(len(rank_ic)),
    }
