"""Per-asset time-series features and per-date cross-sectional transforms."""

from collections.abc import Sequence

import polars as pl

from models.types import CLOSE, DATE, KEYS, SYMBOL

POS = pl.col("_pos")


def _after(expr: pl.Expr, lookback: int) -> pl.Expr:
    """``expr`` where the row has ``lookback`` earlier rows of its own symbol, else null."""
    return pl.when(POS >= lookback).then(expr)


def price_features(prices: pl.LazyFrame, windows: Sequence[int] = (5, 20, 60)) -> pl.LazyFrame:
    """Returns, volatility, moving-average gaps, drawdowns, range position, skew and RSI.

    The panel is sorted by ``(symbol, date)`` once and every window rolls over the whole column;
    a window that would reach into the previous symbol is set to null from each row's position
    within its symbol. This gives the same values as ``.over(symbol)`` on every expression at
    about a third of the cost (measured on the shared S&P 500 set, see ``make bench``), and no
    window ever reaches into another symbol's history or into the future.
    """
    close = pl.col(CLOSE)
    log_ret = _after(close.log().diff(), 1)  # null on a symbol's first row
    exprs: list[pl.Expr] = [log_ret.alias("ret_1"), _after(_rsi(14), 14).alias("rsi_14")]
    for w in windows:
        low, high = close.rolling_min(w), close.rolling_max(w)
        exprs += [
            _after(close / close.shift(w) - 1, w).alias(f"ret_{w}"),
            _after(log_ret.rolling_std(w), w).alias(f"vol_{w}"),
            _after(close / close.rolling_mean(w) - 1, w - 1).alias(f"ma_gap_{w}"),
            _after(close / high - 1, w - 1).alias(f"drawdown_{w}"),
            _after((close - low) / (high - low), w - 1).alias(f"range_pos_{w}"),
        ]
    longest = max(windows)
    exprs.append(_after(log_ret.rolling_skew(longest), longest).alias(f"skew_{longest}"))
    return (
        prices.sort(KEYS)
        .with_columns(pl.int_range(pl.len()).over(SYMBOL).alias("_pos"))
        .with_columns(exprs)
        .drop("_pos")
    )


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
