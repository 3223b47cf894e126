"""Long-only allocators on a ``[date, symbol, weight]`` frame of rebalance-date targets."""

import numpy as np
import polars as pl
from skfolio.optimization import HierarchicalRiskParity

from models.panel import to_dense

WEIGHT_SCHEMA = {"date": pl.Date, "symbol": pl.String, "weight": pl.Float64}


def rebalance_dates(dates: pl.Series, every: int) -> pl.Series:
    """Every ``every``-th unique date, starting with the first."""
    return dates.unique().sort().gather_every(every)


def top_k_weights(
    signals: pl.DataFrame, dates: pl.Series, k: int, score: str = "score"
) -> pl.DataFrame:
    """Equal weight on the ``k`` highest-scored symbols of each rebalance date."""
    return (
        signals.filter(pl.col("date").is_in(dates.implode()))
        .with_columns(pl.col(score).rank("ordinal", descending=True).over("date").alias("_rank"))
        .filter(pl.col("_rank") <= k)
        .with_columns((1.0 / pl.len()).over("date").alias("weight"))
        .select(list(WEIGHT_SCHEMA))
        .sort("date", "symbol")
    )


def equal_weights(universe: pl.DataFrame, dates: pl.Series) -> pl.DataFrame:
    """1/N on every symbol that has a price on each rebalance date (the naive benchmark)."""
    return (
        universe.filter(pl.col("date").is_in(dates.implode()))
        .with_columns((1.0 / pl.len()).over("date").alias("weight"))
        .select(list(WEIGHT_SCHEMA))
        .sort("date", "symbol")
    )


def hrp_weights(returns: pl.DataFrame, dates: pl.Series, lookback: int = 252) -> pl.DataFrame:
    """Hierarchical risk parity (skfolio) on the trailing ``lookback`` days before each date.

    Only symbols with a full return history in the window take part.
    """
    all_dates, symbols, matrix = to_dense(returns, "ret")
    parts = []
    for day, stamp in zip(dates.to_list(), dates.to_numpy(), strict=True):
        end = np.searchsorted(all_dates, stamp, side="right")
        window = matrix[max(0, end - lookback) : end]
        if len(window) < lookback // 2:
            continue
        keep = ~np.isnan(window).any(axis=0)
        if keep.sum() < 2:
            continue
        model = HierarchicalRiskParity().fit(window[:, keep])
        parts.append(
            pl.DataFrame(
                {"date": [day] * int(keep.sum()), "symbol": symbols[keep], "weight": model.weights_}
            )
        )
    return pl.concat(parts).cast(WEIGHT_SCHEMA).sort("date", "symbol")
