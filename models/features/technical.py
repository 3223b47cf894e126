"""Per-asset time-series features and per-date cross-sectional transforms."""

from collections.abc import Sequence

import polars as pl

from models.types import CLOSE, DATE, KEYS, SYMBOL

LOG_RET = pl.col(CLOSE).log().diff()


def price_features(prices: pl.LazyFrame, windows: Sequence[int] = (5, 20, 60)) -> pl.LazyFrame:
    """Returns, volatility, moving-average gaps, drawdowns, range position, skew and RSI.

    Every expression runs ``.over(symbol)`` on the panel sorted by ``(symbol, date)``, so a
    window never reaches into another symbol's history nor into the future.
    """
    close = pl.col(CLOSE)
    exprs: list[pl.Expr] = [LOG_RET.alias("ret_1"), _rsi(14).alias("rsi_14")]
    for w in windows:
        low, high = close.rolling_min(w), close.rolling_max(w)
        exprs += [
            (close / close.shift(w) - 1).alias(f"ret_{w}"),
            LOG_RET.rolling_std(w).alias(f"vol_{w}"),
            (close / close.rolling_mean(w) - 1).alias(f"ma_gap_{w}"),
            (close / high - 1).alias(f"drawdown_{w}"),
            ((close - low) / (high - low)).alias(f"range_pos_{w}"),
        ]
    exprs.append(LOG_RET.rolling_skew(max(windows)).alias(f"skew_{max(windows)}"))
    return prices.sort(KEYS).with_columns(e.over(SYMBOL) for e in exprs)


def _rsi(window: int) -> pl.Expr:
    """Relative strength index on simple rolling means of gains and losses."""
    change = pl.col(CLOSE).diff()
    gain = change.clip(lower_bound=0).rolling_mean(window)
    loss = (-change).clip(lower_bound=0).rolling_mean(window)
    return 100 - 100 / (1 + gain / loss)


def market_relative(panel: pl.LazyFrame, market_ret: str, window: int = 60) -> pl.LazyFrame:
    """Rolling beta and correlation of each asset's daily return with a market return column."""
    cov = pl.rolling_cov("ret_1", market_ret, window_size=window)
    var = pl.col(market_ret).rolling_var(window)
    return panel.sort(KEYS).with_columns(
        (cov / var).over(SYMBOL).alias(f"beta_{window}"),
        pl.rolling_corr("ret_1", market_ret, window_size=window)
        .over(SYMBOL)
        .alias(f"corr_{window}"),
    )


def cross_sectional_ranks(panel: pl.LazyFrame, columns: Sequence[str]) -> pl.LazyFrame:
    """Add ``<col>_csrank``: each column's rank across symbols on the same date, scaled to (0, 1]."""
    return panel.with_columns(
        (pl.col(c).rank() / pl.col(c).count()).over(DATE).alias(f"{c}_csrank") for c in columns
    )
