"""Forward-return labels, each carrying the date its horizon ends (for purging)."""

import polars as pl

from models.types import CLOSE, DATE, KEYS, SYMBOL


def forward_returns(prices: pl.LazyFrame, horizon: int = 5) -> pl.LazyFrame:
    """``label`` = close[t + horizon] / close[t] - 1 per symbol, ``label_end`` = date[t + horizon].

    The last ``horizon`` rows of each symbol have no label and are dropped: they are not
    training data, and the live prediction uses features alone.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 trading day, got {horizon}")
    close = pl.col(CLOSE)
    return (
        prices.sort(KEYS)
        .select(
            SYMBOL,
            DATE,
            (close.shift(-horizon) / close - 1).over(SYMBOL).alias("label"),
            pl.col(DATE).shift(-horizon).over(SYMBOL).alias("label_end"),
        )
        .drop_nulls("label")
    )
