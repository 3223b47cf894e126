"""Corporate actions: back-adjust raw OHLCV for splits and dividends.

No library we use does this on a polars panel (yfinance and pandas-datareader take adjusted
prices from the vendor); the formula is the standard CRSP-style one and is checked against
AlphaVantage's own ``adjusted_close`` on real data in the tests. Finding splits a source forgot
to adjust is a data-quality rule: ``data_contracts.quality``.
"""

import polars as pl

PRICE_FIELDS = ("open", "high", "low", "close")


def adjust(panel: pl.DataFrame) -> pl.DataFrame:
    """Back-adjust prices and volume of a ``[symbol, date, close, ..., split, dividend]`` panel
    (sorted by symbol and date). On an event day ``t`` with split ``s`` (new shares per old,
    1 = none) and cash dividend ``d``, every earlier price is multiplied by
    ``(1 - d / close[t-1]) / s`` and every earlier volume by ``s``; the newest prices are left
    as traded. ``split`` and ``dividend`` are dropped."""
    split = pl.col("split").fill_null(1.0) if "split" in panel.columns else pl.lit(1.0)
    dividend = pl.col("dividend").fill_null(0.0) if "dividend" in panel.columns else pl.lit(0.0)
    event = (1 - dividend / pl.col("close").shift(1).over("symbol")).fill_null(1.0) / split
    later = event.shift(-1).over("symbol").fill_null(1.0)
    factor = later.cum_prod(reverse=True).over("symbol")
    share_factor = (
        split.shift(-1).over("symbol").fill_null(1.0).cum_prod(reverse=True).over("symbol")
    )
    prices = [pl.col(c) * pl.col("adj_factor") for c in PRICE_FIELDS if c in panel.columns]
    volume = [pl.col("volume") * share_factor] if "volume" in panel.columns else []
    return (
        panel.with_columns(adj_factor=factor)
        .with_columns(*prices, *volume)
        .drop("adj_factor", *[c for c in ("split", "dividend") if c in panel.columns])
    )
